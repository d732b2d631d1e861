// Package promcheck helps tests check dashboards and alert rules against
// Prometheus: it extracts every query of a Grafana dashboard (Tessera's and
// etcd's mixin, old row layout and new panel layout), substitutes Grafana's
// template variables, reads the expressions of Prometheus rule files, and
// runs instant queries through Prometheus' HTTP API.
package promcheck

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// Expr is one query of a dashboard or rule file, and where it is.
type Expr struct {
	Where string // "<dashboard> / <panel> / <refId>" or "<file> / <group> / <rule>"
	Expr  string
	Alert bool // an alert or recording rule (evaluated by Prometheus itself)
}

// dashboard is the part of Grafana's dashboard JSON that holds queries.
type dashboard struct {
	Title  string  `json:"title"`
	Panels []panel `json:"panels"`
	Rows   []struct {
		Panels []panel `json:"panels"`
	} `json:"rows"` // Grafana 7 and earlier
	Templating struct {
		List []Variable `json:"list"`
	} `json:"templating"`
}

type panel struct {
	Title   string  `json:"title"`
	Panels  []panel `json:"panels"` // a collapsed row's panels
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
}

// Variable is a dashboard template variable.
type Variable struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Query any    `json:"query"`
}

// Dashboard is a parsed dashboard: its title, variables and queries.
type Dashboard struct {
	Title     string
	Variables []Variable
	Exprs     []Expr
}

// ParseDashboard extracts the queries of a dashboard's JSON.
func ParseDashboard(b []byte) (*Dashboard, error) {
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("promcheck: dashboard: %w", err)
	}
	out := &Dashboard{Title: d.Title, Variables: d.Templating.List}
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			for _, t := range p.Targets {
				if strings.TrimSpace(t.Expr) == "" {
					continue
				}
				out.Exprs = append(out.Exprs, Expr{Where: d.Title + " / " + p.Title + " / " + t.RefID, Expr: t.Expr})
			}
		}
	}
	walk(d.Panels)
	for _, r := range d.Rows {
		walk(r.Panels)
	}
	return out, nil
}

// ParseDashboardFile reads and parses a dashboard file.
func ParseDashboardFile(path string) (*Dashboard, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseDashboard(b)
}

// Substitute replaces Grafana's variables in an expression by values that
// select everything: vars maps a variable name (without $) to its value;
// Grafana's built-in intervals become rate.
func Substitute(expr string, vars map[string]string, rate string) string {
	names := make([]string, 0, len(vars))
	for k := range vars {
		names = append(names, k)
	}
	// Longest first, so $instance is not cut by a $inst variable.
	sort.Slice(names, func(i, j int) bool { return len(names[i]) > len(names[j]) })
	r := []string{"$__rate_interval", rate, "${__rate_interval}", rate, "$__interval", rate, "${__interval}", rate, "$__range", rate}
	for _, n := range names {
		r = append(r, "${"+n+"}", vars[n], "$"+n, vars[n])
	}
	return strings.NewReplacer(r...).Replace(expr)
}

// ruleFile is Prometheus' rule file format.
type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert  string `json:"alert"`
			Record string `json:"record"`
			Expr   string `json:"expr"`
		} `json:"rules"`
	} `json:"groups"`
}

// ParseRules returns the expressions of a rule file's rules.
func ParseRules(name string, b []byte) ([]Expr, error) {
	var f ruleFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("promcheck: rules %s: %w", name, err)
	}
	var out []Expr
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out = append(out, Expr{Where: name + " / " + g.Name + " / " + r.Alert + r.Record, Expr: r.Expr, Alert: true})
		}
	}
	return out, nil
}

// Client queries a Prometheus server's HTTP API.
type Client struct {
	URL  string // e.g. http://127.0.0.1:9090
	HTTP *http.Client
}

// Result is an instant query's answer.
type Result struct {
	Type    string // vector, scalar, matrix, string
	Samples int    // series in a vector or matrix; 1 for a scalar
	NaN     int    // samples whose value is NaN
}

// get GETs an API path and decodes its JSON answer into body.
func (c *Client) get(ctx context.Context, path string, body any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(body); err != nil {
		return fmt.Errorf("promcheck: decode %s (%s): %w", path, resp.Status, err)
	}
	return nil
}

// Query runs an instant query.
func (c *Client) Query(ctx context.Context, expr string) (Result, error) {
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := c.get(ctx, "/api/v1/query?"+url.Values{"query": {expr}}.Encode(), &body); err != nil {
		return Result{}, err
	}
	if body.Status != "success" {
		return Result{}, fmt.Errorf("promcheck: query failed: %s", body.Error)
	}
	res := Result{Type: body.Data.ResultType}
	switch res.Type {
	case "vector":
		var v []struct {
			Value [2]any `json:"value"`
		}
		if err := json.Unmarshal(body.Data.Result, &v); err != nil {
			return Result{}, err
		}
		res.Samples = len(v)
		for _, s := range v {
			if s.Value[1] == "NaN" {
				res.NaN++
			}
		}
	case "matrix":
		var m []json.RawMessage
		if err := json.Unmarshal(body.Data.Result, &m); err != nil {
			return Result{}, err
		}
		res.Samples = len(m)
	default:
		res.Samples = 1
	}
	return res, nil
}

// Rule is one rule as Prometheus evaluates it (/api/v1/rules).
type Rule struct {
	Group     string
	Name      string
	Health    string // ok, err, unknown
	LastError string
	Evaluated bool
}

// Rules returns every loaded rule and its evaluation health.
func (c *Client) Rules(ctx context.Context) ([]Rule, error) {
	var body struct {
		Status string `json:"status"`
		Data   struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []struct {
					Name           string `json:"name"`
					Health         string `json:"health"`
					LastError      string `json:"lastError"`
					LastEvaluation string `json:"lastEvaluation"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := c.get(ctx, "/api/v1/rules", &body); err != nil {
		return nil, err
	}
	var out []Rule
	for _, g := range body.Data.Groups {
		for _, r := range g.Rules {
			out = append(out, Rule{Group: g.Name, Name: r.Name, Health: r.Health, LastError: r.LastError,
				Evaluated: r.LastEvaluation != "" && !strings.HasPrefix(r.LastEvaluation, "0001-")})
		}
	}
	return out, nil
}

// Alert is an active (pending or firing) alert (/api/v1/alerts).
type Alert struct {
	Name   string
	State  string // pending or firing
	Labels map[string]string
}

// Alerts returns the active alerts.
func (c *Client) Alerts(ctx context.Context) ([]Alert, error) {
	var body struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	if err := c.get(ctx, "/api/v1/alerts", &body); err != nil {
		return nil, err
	}
	var out []Alert
	for _, a := range body.Data.Alerts {
		out = append(out, Alert{Name: a.Labels["alertname"], State: a.State, Labels: a.Labels})
	}
	return out, nil
}
