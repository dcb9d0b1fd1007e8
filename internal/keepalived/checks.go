package keepalived

import (
	"strconv"
	"strings"

	"halb/internal/config"
)

// check maps one checker block of a real server to halb checks: one, or one
// per url of HTTP_GET / SSL_GET and per host of SMTP_CHECK.
func (m *mapper) check(n *Node, kind string, inh inherited, rs realServer) []config.Check {
	ch := config.Check{Type: kind, Port: rs.port, Interval: inh.delayLoop, Timeout: inh.connectTimeout}
	retry := inh.retry
	if retry < 0 {
		switch kind {
		case "dns":
			retry = 3
		case "exec":
			retry = 0
		default:
			retry = 1
		}
	}
	host := inh.virtualhost
	var urls, hosts []*Node
	var miscTimeout config.Duration
	sni := false
	hs := map[string]handler{
		"connect_ip": func(c *Node) {
			if a, ok := m.addrArg(c, 0); ok {
				ch.Address = a.String()
			}
		},
		"connect_port": func(c *Node) { ch.Port, _ = m.portArg(c, 0) },
		"bindto": func(c *Node) {
			if a, ok := m.addrArg(c, 0); ok {
				ch.Source = a.String()
			}
		},
		"bind_if": func(c *Node) {
			if ch.Source == "" {
				ch.Source = c.Arg(0)
			}
		},
		"bind_port":          m.ignore("halb's checks connect from a port the kernel picks"),
		"fwmark":             func(c *Node) { v, _ := m.intArg(c, 0, 0, 1<<32-1); ch.Mark = uint32(v) },
		"connect_timeout":    func(c *Node) { ch.Timeout, _ = m.timerArg(c, 0) },
		"retry":              func(c *Node) { retry, _ = m.intArg(c, 0, 0, 1<<20) },
		"nb_get_retry":       func(c *Node) { retry, _ = m.intArg(c, 0, 0, 1<<20) },
		"delay_before_retry": m.ignore(retryInstead),
		"warmup":             m.ignore("halb spreads the first checks of a pool over its interval"),
		"delay_loop":         func(c *Node) { ch.Interval, _ = m.timerArg(c, 0) },
		"alpha": func(c *Node) {
			if m.boolArg(c, 0) != inh.alpha {
				m.warnf(c.Pos, "alpha differs from the virtual server's: halb starts every server of a pool alike (as the virtual server says)")
			}
		},
		"log_all_failures": m.ignore("halb logs every health change with its reason"),
	}
	switch kind {
	case "http", "https":
		hs["url"] = func(c *Node) { urls = append(urls, c) }
		hs["virtualhost"] = func(c *Node) { host = c.Arg(0) }
		hs["http_protocol"] = m.ignore("halb's checks speak HTTP/1.1 and close the connection")
		hs["fast_recovery"] = m.ignore("halb checks each url of a server at every interval")
		hs["enable_sni"] = func(*Node) { sni = true }
	case "smtp":
		hs["helo_name"] = func(c *Node) { ch.HELOName = c.Arg(0) }
		hs["host"] = func(c *Node) { hosts = append(hosts, c) }
	case "dns":
		ch.Query, ch.QueryType = ".", "SOA"
		hs["type"] = func(c *Node) { ch.QueryType = strings.ToUpper(c.Arg(0)) }
		hs["name"] = func(c *Node) { ch.Query = c.Arg(0) }
	case "udp":
		hs["payload"] = func(c *Node) { ch.Payload = strings.Join(argVals(c.Args), " ") }
		hs["require_reply"] = func(c *Node) {
			if len(c.Args) == 0 {
				m.errorf(c.Pos, "require_reply without data is not supported: halb's udp check compares the reply with expect_reply, or expects no ICMP unreachable")
				return
			}
			ch.ExpectReply = strings.Join(argVals(c.Args), " ")
		}
		hs["min_reply_length"] = m.ignore("halb compares the reply with expect_reply")
		hs["max_reply_length"] = m.ignore("halb compares the reply with expect_reply")
	case "exec":
		ch.Port = 0
		hs["misc_path"] = func(c *Node) {
			if m.needArgs(c, 1) {
				for _, a := range c.Args {
					ch.Command = append(ch.Command, splitCommand(a.Val)...)
				}
			}
		}
		hs["misc_timeout"] = func(c *Node) {
			v, _ := m.intArg(c, 0, 1, 1<<20)
			miscTimeout = config.Duration(int64(v) * 1e9)
		}
		hs["misc_dynamic"] = m.reject("halb's exec check takes a weight from what the program prints, not from its exit code; the server's weight would no longer follow the script")
		hs["user"] = func(c *Node) {
			if m.needArgs(c, 1) {
				ch.User = c.Arg(0)
				if len(c.Args) > 1 {
					m.warnf(c.ArgPos(1), "user: halb runs the check with the user's own group, not %q", c.Arg(1))
				}
			}
		}
	}
	m.walk(n.Name, n.Children, hs)
	if kind == "exec" {
		ch.Port = 0
		ch.Timeout = ch.Interval // keepalived's misc_timeout defaults to delay_loop
		if miscTimeout != 0 {
			ch.Timeout = miscTimeout
		}
	}
	ch.Rise, ch.Fall = 1, retry+1
	if ch.Timeout > ch.Interval {
		m.warnf(n.Pos, "%s: the timeout %s is longer than the interval %s; halb gives a check at most its interval", n.Name, ch.Timeout, ch.Interval)
		ch.Timeout = ch.Interval
	}
	switch kind {
	case "http", "https":
		return m.urls(n, ch, urls, host, sni)
	case "smtp":
		if len(hosts) > 0 {
			return m.smtpHosts(ch, hosts)
		}
	}
	return []config.Check{ch}
}

func (m *mapper) urls(n *Node, base config.Check, urls []*Node, host string, sni bool) []config.Check {
	if len(urls) == 0 {
		m.errorf(n.Pos, "%s needs a url block", n.Name)
		return nil
	}
	var out []config.Check
	for _, u := range urls {
		ch := base
		ch.Host = host
		m.walk("url", u.Children, map[string]handler{
			"path": func(c *Node) { ch.Path = c.Arg(0) },
			"digest": func(c *Node) {
				if m.needArgs(c, 1) {
					ch.BodyDigest = "md5:" + strings.ToLower(c.Arg(0))
				}
			},
			"status_code": func(c *Node) {
				for i, a := range c.Args {
					lo, hi, isRange := strings.Cut(a.Val, "-")
					l, err1 := strconv.Atoi(lo)
					h, err2 := l, error(nil)
					if isRange {
						h, err2 = strconv.Atoi(hi)
					}
					if err1 != nil || err2 != nil {
						m.errorf(c.ArgPos(i), "status_code: %q is not a code or range", a.Val)
						continue
					}
					ch.ExpectStatus = append(ch.ExpectStatus, config.StatusRange{Lo: l, Hi: h})
				}
			},
			"virtualhost":      func(c *Node) { ch.Host = c.Arg(0) },
			"regex":            func(c *Node) { ch.BodyRegex = c.Arg(0) },
			"regex_no_match":   m.reject("halb's body_regex must match; a check that fails on a match would pass instead"),
			"regex_options":    m.ignore("halb uses Go regular expression syntax with no options"),
			"regex_stack":      m.ignore("halb uses Go regular expressions"),
			"regex_min_offset": m.ignore("halb searches the whole body"),
			"regex_max_offset": m.ignore("halb searches the whole body"),
		})
		if ch.Path == "" {
			ch.Path = "/"
		}
		if len(ch.ExpectStatus) == 0 && ch.BodyDigest == "" {
			ch.ExpectStatus = []config.StatusRange{{Lo: 200, Hi: 299}}
		}
		if sni {
			if ch.Host == "" {
				m.warnf(n.Pos, "enable_sni: no virtualhost to send as the server name; halb sends none")
			}
			ch.SNI = ch.Host
		}
		out = append(out, ch)
	}
	return out
}

func (m *mapper) smtpHosts(base config.Check, hosts []*Node) []config.Check {
	var out []config.Check
	for _, h := range hosts {
		ch := base
		m.walk("host", h.Children, map[string]handler{
			"connect_ip": func(c *Node) {
				if a, ok := m.addrArg(c, 0); ok {
					ch.Address = a.String()
				}
			},
			"connect_port": func(c *Node) { ch.Port, _ = m.portArg(c, 0) },
			"bindto": func(c *Node) {
				if a, ok := m.addrArg(c, 0); ok {
					ch.Source = a.String()
				}
			},
			"bind_port": m.ignore("halb's checks connect from a port the kernel picks"),
			"fwmark":    func(c *Node) { v, _ := m.intArg(c, 0, 0, 1<<32-1); ch.Mark = uint32(v) },
		})
		out = append(out, ch)
	}
	return out
}
