package keepalived

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"halb/internal/config"
)

func (m *mapper) globalDefs(g *Node) {
	m.walk("global_defs", g.Children, mergeHandlers(m.globalNodeHandlers(), m.globalMailHandlers(g), m.globalIgnored()))
	m.mailWithoutServer(g)
}

// globalNodeHandlers read the node's name, script user and the defaults
// of every VRRP instance.
func (m *mapper) globalNodeHandlers() map[string]handler {
	c := m.cfg
	garp := func(field string, set func(n *Node) bool) handler {
		return func(n *Node) {
			if set(n) {
				m.garp[field] = n.Pos
			}
		}
	}
	return map[string]handler{
		"router_id": func(n *Node) {
			if m.needArgs(n, 1) {
				c.Node = n.Arg(0)
				m.set("node", n.ArgPos(0))
				m.origin("node", n)
			}
		},
		"lvs_id": m.ignore("keepalived 2 ignores it too; router_id names the node"),
		"script_user": func(n *Node) {
			if m.needArgs(n, 1) {
				c.ScriptUser = n.Arg(0)
				m.set("script_user", n.ArgPos(0))
				if len(n.Args) > 1 {
					m.warnf(n.ArgPos(1), "script_user: halb runs scripts with the user's own group, not %q", n.Arg(1))
				}
			}
		},
		"enable_script_security": m.ignore("halb runs scripts as their user or script_user (root only when written) and checks nothing else"),
		"net_namespace":          m.netNamespace,
		"vrrp_version": func(n *Node) {
			if v, ok := m.intArg(n, 0, 2, 3); ok {
				m.version, m.versionAt = v, n.ArgPos(0)
			}
		},
		"vrrp_garp_master_delay": garp("second_burst", func(n *Node) bool {
			d, ok := m.timerArg(n, 0)
			m.globalGARP.SecondBurst = d
			return ok
		}),
		"vrrp_garp_master_repeat": garp("count", func(n *Node) bool {
			v, ok := m.intArg(n, 0, 0, 1<<16)
			m.globalGARP.Count = v
			return ok
		}),
		"vrrp_garp_master_refresh": garp("refresh", func(n *Node) bool {
			d, ok := m.timerArg(n, 0)
			m.globalGARP.Refresh = d
			return ok
		}),
		"vrrp_garp_master_refresh_repeat": m.ignore("halb sends one gratuitous ARP per refresh"),
		"vrrp_garp_lower_prio_delay":      m.globalLowerPrioGARP("lower_priority_delay"),
		"vrrp_garp_lower_prio_repeat":     m.globalLowerPrioGARP("lower_priority_count"),
		"vrrp_mcast_group4":               m.mcastGroup(&m.cfg.VRRP.MulticastGroup4, "vrrp.multicast_group4"),
		"vrrp_mcast_group6":               m.mcastGroup(&m.cfg.VRRP.MulticastGroup6, "vrrp.multicast_group6"),
	}
}

// netNamespace reads net_namespace NAME (in global_defs or at the top
// level, as keepalived takes it): the network namespace to run in.
func (m *mapper) netNamespace(n *Node) {
	if m.needArgs(n, 1) {
		m.cfg.NetNamespace = n.Arg(0)
		m.set("net_namespace", n.ArgPos(0))
		m.origin("net_namespace", n)
	}
}

// globalMailHandlers read the mail notification settings.
func (m *mapper) globalMailHandlers(g *Node) map[string]handler {
	c := m.cfg
	smtp := func() *config.SMTP {
		if c.Notify.SMTP == nil {
			c.Notify.SMTP = &config.SMTP{}
			m.set("notify.smtp", g.Pos)
			m.origin("notify", g)
		}
		return c.Notify.SMTP
	}
	return map[string]handler{
		"notification_email": func(n *Node) {
			s := smtp()
			for _, w := range words(n) {
				s.To = append(s.To, w.Name)
				m.set(fmt.Sprintf("notify.smtp.to[%d]", len(s.To)-1), w.Pos)
			}
			m.set("notify.smtp.to", n.Pos)
		},
		"notification_email_from": func(n *Node) {
			if m.needArgs(n, 1) {
				smtp().From = n.Arg(0)
				m.set("notify.smtp.from", n.ArgPos(0))
			}
		},
		"smtp_server": func(n *Node) {
			if !m.needArgs(n, 1) {
				return
			}
			port := "25"
			if len(n.Args) > 1 {
				if _, ok := m.portArg(n, 1); !ok {
					return
				}
				port = n.Arg(1)
			}
			smtp().Server = net.JoinHostPort(n.Arg(0), port)
			m.set("notify.smtp.server", n.ArgPos(0))
		},
		"smtp_helo_name": func(n *Node) {
			if m.needArgs(n, 1) {
				smtp().Helo = n.Arg(0)
				m.set("notify.smtp.helo", n.ArgPos(0))
			}
		},
		"smtp_connect_timeout": func(n *Node) {
			if !m.needArgs(n, 1) {
				return
			}
			v, err := strconv.ParseUint(n.Arg(0), 10, 32)
			switch {
			case err != nil || v == 0:
				m.warnf(n.ArgPos(0), "smtp_connect_timeout: %q is not a number of seconds from 1: keepalived ignores it, and halb keeps its default (30s)", n.Arg(0))
				return
			case v > 600:
				m.warnf(n.ArgPos(0), "smtp_connect_timeout: %d s: halb bounds a mail's dialog at 10m", v)
				v = 600
			}
			smtp().Timeout = config.Duration(time.Duration(v) * time.Second)
			m.set("notify.smtp.timeout", n.ArgPos(0))
		},
		"smtp_alert":         m.ignore("with notify.smtp set, halb mails every state change"),
		"smtp_alert_vrrp":    m.ignore("with notify.smtp set, halb mails every state change"),
		"smtp_alert_checker": m.ignore("with notify.smtp set, halb mails every state change"),
	}
}

// globalIgnored are the global keywords halb ignores (a warning) or
// refuses (an error), each saying what halb does instead.
func (m *mapper) globalIgnored() map[string]handler {
	noFirewall := m.ignore("halb adds no firewall rules for VIPs; it answers for them as keepalived without vrrp_strict does")
	return map[string]handler{
		"vrrp_garp_interval":               m.ignore("halb paces gratuitous ARPs itself"),
		"vrrp_gna_interval":                m.ignore("halb paces unsolicited neighbour advertisements itself"),
		"vrrp_min_garp":                    m.ignore("halb sends its garp count on becoming master"),
		"lvs_sync_daemon":                  m.lvsSyncDaemon,
		"vrrp_strict":                      m.ignore("halb follows the RFC on the wire, accepts packets to its VIPs and adds no firewall rules"),
		"vrrp_iptables":                    noFirewall,
		"vrrp_ipsets":                      noFirewall,
		"nftables":                         noFirewall,
		"nftables_priority":                noFirewall,
		"nftables_counters":                noFirewall,
		"nftables_ifindex":                 noFirewall,
		"vrrp_skip_check_adv_addr":         m.ignore("halb checks the address list of every advert, and drops those that differ unless from the address owner"),
		"vrrp_check_unicast_src":           m.ignore("halb accepts unicast adverts from its configured peers"),
		"vrrp_priority":                    m.ignore("halb runs at its own scheduling priority"),
		"checker_priority":                 m.ignore("halb runs at its own scheduling priority"),
		"bfd_priority":                     m.ignore("halb runs at its own scheduling priority"),
		"vrrp_no_swap":                     m.lockMemory,
		"checker_no_swap":                  m.ignore("halb does not lock its memory"),
		"bfd_no_swap":                      m.ignore("halb does not lock its memory"),
		"vrrp_rt_priority":                 m.realtimePriority,
		"checker_rt_priority":              m.ignore("halb runs at its own scheduling priority"),
		"dynamic_interfaces":               m.ignore("halb waits for an instance's interface to appear"),
		"vrrp_higher_prio_send_advert":     m.ignore("halb answers a lower-priority master with its own advert as the RFC says"),
		"vrrp_lower_prio_no_advert":        m.ignore("halb follows the RFC"),
		"max_auto_priority":                m.ignore("halb runs at its own scheduling priority"),
		"lvs_timeouts":                     m.ignore("halb leaves IPVS connection timeouts as the kernel has them; set them with ipvsadm --set"),
		"lvs_flush":                        m.ignore("halb never flushes IPVS; it removes only what it installed"),
		"lvs_flush_onstop":                 m.ignore("halb leaves its services installed on stop, so a restart is seamless"),
		"snmp_socket":                      m.ignore("halb has no SNMP; it serves Prometheus metrics (api.metrics)"),
		"enable_snmp_vrrp":                 m.ignore("halb has no SNMP; it serves Prometheus metrics (api.metrics)"),
		"enable_snmp_checker":              m.ignore("halb has no SNMP; it serves Prometheus metrics (api.metrics)"),
		"enable_snmp_rfc":                  m.ignore("halb has no SNMP; it serves Prometheus metrics (api.metrics)"),
		"enable_snmp_rfcv2":                m.ignore("halb has no SNMP; it serves Prometheus metrics (api.metrics)"),
		"enable_snmp_rfcv3":                m.ignore("halb has no SNMP; it serves Prometheus metrics (api.metrics)"),
		"enable_snmp_keepalived":           m.ignore("halb has no SNMP; it serves Prometheus metrics (api.metrics)"),
		"enable_traps":                     m.ignore("halb has no SNMP; it serves Prometheus metrics (api.metrics)"),
		"enable_dbus":                      m.ignore("halb has no D-Bus interface; use the status socket"),
		"notify_fifo":                      m.ignore("halb has no notify FIFO; use notify.exec or notify.webhooks"),
		"vrrp_notify_fifo":                 m.ignore("halb has no notify FIFO; use notify.exec or notify.webhooks"),
		"lvs_notify_fifo":                  m.ignore("halb has no notify FIFO; use notify.exec or notify.webhooks"),
		"process_names":                    m.ignore("halb is one process named halb"),
		"process_name":                     m.ignore("halb is one process named halb"),
		"vrrp_process_name":                m.ignore("halb is one process named halb"),
		"checker_process_name":             m.ignore("halb is one process named halb"),
		"script_timeout":                   m.ignore("each halb script has its own timeout"),
		"default_interface":                m.ignore("every halb instance names its interface"),
		"vrrp_netlink_cmd_rcv_bufs":        m.ignore("halb sizes its netlink buffers itself"),
		"vrrp_netlink_monitor_rcv_bufs":    m.ignore("halb sizes its netlink buffers itself"),
		"lvs_netlink_cmd_rcv_bufs":         m.ignore("halb sizes its netlink buffers itself"),
		"lvs_netlink_monitor_rcv_bufs":     m.ignore("halb sizes its netlink buffers itself"),
		"vrrp_startup_delay":               m.ignore("halb starts its instances as backups and elects at once"),
		"tmp_config_directory":             m.ignore("halb reads its configuration once per (re)load"),
		"config_save_dir":                  m.ignore("halb keeps no copies of its configuration"),
		"random_seed":                      m.ignore("halb reads ${_RANDOM} as the lowest value of its range"),
		"vmac_prefix":                      m.ignore(vmacNames),
		"vmac_addr_prefix":                 m.ignore(vmacNames),
		"umask":                            m.ignore("halb writes its files with its own modes"),
		"reload_check_config":              m.ignore("halb checks a new configuration before applying it on every reload"),
		"reload_time_file":                 m.ignore("halb reloads on SIGHUP only"),
		"reload_repeat":                    m.ignore("halb reloads on SIGHUP only"),
		"reload_file":                      m.ignore("halb reloads on SIGHUP only"),
		"data_use_instance":                m.ignore("halb writes no data files; use halb status"),
		"state_dir":                        m.ignore("halb's state directory is state_dir in its own configuration"),
		"fifo_write_vrrp_states_on_reload": m.ignore("halb has no notify FIFO"),
		"vrrp_rx_bufs_policy":              m.ignore("halb sizes its socket buffers itself"),
		"vrrp_rx_bufs_multiplier":          m.ignore("halb sizes its socket buffers itself"),
		"vrrp_garp_extra_if":               m.ignore("halb sends gratuitous ARP on the instance's interface only"),
		"vrrp_version_check":               m.ignore("halb accepts adverts of the instance's version"),
		"no_checker_emails":                m.ignore("with notify.smtp set, halb mails every state change"),
		"checker_log_all_failures":         m.ignore("halb logs every health change with its reason"),
		"log_unknown_vrids":                m.ignore("halb ignores adverts of other VRIDs"),
		"vrrp_owner_ignore_adverts":        m.ignore("an address owner (priority 255) in halb stays master"),
		"vrrp_track_process":               m.ignore(processScan),
	}
}

// mailWithoutServer drops mail settings that name no smtp_server:
// keepalived loads them and sends nothing, and so does halb, with a
// warning.
func (m *mapper) mailWithoutServer(g *Node) {
	s := m.cfg.Notify.SMTP
	if s == nil || s.Server != "" {
		return
	}
	m.cfg.Notify.SMTP = nil
	for path := range m.written {
		if path == "notify.smtp" || strings.HasPrefix(path, "notify.smtp.") {
			delete(m.written, path)
		}
	}
	delete(m.origins, "notify")
	m.warnf(g.Pos, "global_defs: mail settings without smtp_server: keepalived sends no mail, and halb sets no notify.smtp")
}

// lvsSyncDaemon maps "lvs_sync_daemon IFACE INSTANCE [id N] [maxlen N]
// [port N] [ttl N] [group ADDR]".
func (m *mapper) lvsSyncDaemon(n *Node) {
	if !m.needArgs(n, 2) {
		return
	}
	s := &config.IPVSSync{Interface: n.Arg(0), Instance: n.Arg(1)}
	m.cfg.IPVSSync = s
	m.origin("ipvs_sync", n)
	m.syncAt = n.ArgPos(1)
	m.set("ipvs_sync", n.Pos)
	m.set("ipvs_sync.interface", n.ArgPos(0))
	m.set("ipvs_sync.instance", n.ArgPos(1))
	for i := 2; i < len(n.Args); i += 2 {
		key := n.Arg(i)
		if i+1 >= len(n.Args) {
			m.errorf(n.ArgPos(i), "lvs_sync_daemon: %s needs a value", key)
			return
		}
		at := n.ArgPos(i + 1)
		switch key {
		case "id":
			s.SyncID, _ = m.intArg(n, i+1, 0, 255)
			m.set("ipvs_sync.sync_id", at)
		case "maxlen":
			s.MaxLen, _ = m.intArg(n, i+1, 1, 65507)
			m.set("ipvs_sync.max_len", at)
		case "port":
			p, _ := m.portArg(n, i+1)
			s.McastPort = p
			m.set("ipvs_sync.mcast_port", at)
		case "ttl":
			s.McastTTL, _ = m.intArg(n, i+1, 1, 255)
			m.set("ipvs_sync.mcast_ttl", at)
		case "group":
			s.McastGroup, _ = m.addrArg(n, i+1)
			m.set("ipvs_sync.mcast_group", at)
		default:
			m.errorf(n.ArgPos(i), "lvs_sync_daemon: unknown option %q (id, maxlen, port, ttl, group)", key)
		}
	}
}

func (m *mapper) vrrpScript(n *Node) {
	i := len(m.cfg.VRRP.Scripts)
	p := fmt.Sprintf("vrrp.scripts[%d]", i)
	s := config.Script{Name: n.Arg(0), Interval: config.Duration(1e9)}
	m.set(p, n.Pos)
	m.origin(p, n)
	m.set(p+".interval", n.Pos) // keepalived's default interval is 1s
	if s.Name == "" {
		m.errorf(n.Pos, "vrrp_script needs a name")
	}
	m.set(p+".name", n.ArgPos(0))
	m.walk("vrrp_script", n.Children, map[string]handler{
		"script": func(c *Node) {
			if m.needArgs(c, 1) {
				var parts []string
				for _, a := range c.Args {
					parts = append(parts, splitCommand(a.Val)...)
				}
				s.Command = parts
				m.set(p+".command", c.ArgPos(0))
			}
		},
		"interval": func(c *Node) {
			s.Interval, _ = m.timerArg(c, 0)
			m.set(p+".interval", c.ArgPos(0))
		},
		"timeout": func(c *Node) {
			s.Timeout, _ = m.timerArg(c, 0)
			m.set(p+".timeout", c.ArgPos(0))
		},
		"weight": m.trackWeight(p+".weight", &s.Weight, "the script succeeds", "it fails"),
		"rise": func(c *Node) {
			s.Rise, _ = m.intArg(c, 0, 1, 1<<20)
			m.set(p+".rise", c.ArgPos(0))
		},
		"fall": func(c *Node) {
			s.Fall, _ = m.intArg(c, 0, 1, 1<<20)
			m.set(p+".fall", c.ArgPos(0))
		},
		"user": func(c *Node) {
			if m.needArgs(c, 1) {
				s.User = c.Arg(0)
				m.set(p+".user", c.ArgPos(0))
				if len(c.Args) > 1 {
					m.warnf(c.ArgPos(1), "user: halb runs the script with the user's own group, not %q", c.Arg(1))
				}
			}
		},
		"init_fail": m.ignore("halb starts a tracked script as up until it has run"),
	})
	if s.Timeout > s.Interval {
		m.warnf(n.Pos, "vrrp_script %s: timeout %s is longer than the interval %s; halb stops the script at the interval", s.Name, s.Timeout, s.Interval)
		s.Timeout = s.Interval
	}
	m.cfg.VRRP.Scripts = append(m.cfg.VRRP.Scripts, s)
}

func (m *mapper) vrrpInstance(n *Node) {
	i := len(m.cfg.VRRP.Instances)
	p := fmt.Sprintf("vrrp.instances[%d]", i)
	in := config.Instance{Name: n.Arg(0), Priority: 100, Preempt: true, Version: m.version, GARP: m.globalGARP}
	if in.Name == "" {
		m.errorf(n.Pos, "vrrp_instance needs a name")
	}
	m.instances[in.Name] = i
	m.set(p, n.Pos)
	m.origin(p, n)
	m.set(p+".name", n.ArgPos(0))
	m.set(p+".priority", n.Pos) // keepalived's default priority is 100
	m.set(p+".version", n.Pos)  // keepalived's default version is 2
	if m.versionAt.File != "" {
		m.set(p+".version", m.versionAt)
	}
	for field, at := range m.garp {
		m.set(p+".garp."+field, at)
	}
	b := &instBlock{in: &in, p: p}
	m.walk("vrrp_instance", n.Children, mergeHandlers(b.coreHandlers(m), b.addressHandlers(m), b.trackHandlers(m), b.notifyHandlers(m), b.extraHandlers(m), b.unsupportedHandlers(m)))
	if !b.versionSet && in.Family() == 6 {
		in.Version = 3 // keepalived uses version 3 for IPv6 whatever vrrp_version says
	}
	if in.AuthPassword != "" && in.Version == 3 {
		m.warnf(n.Pos, "authentication: VRRP version 3 has none; keepalived ignores it, and so does halb")
		in.AuthPassword, in.AuthType = "", ""
		delete(m.written, p+".auth_type")
	}
	m.cfg.VRRP.Instances = append(m.cfg.VRRP.Instances, in)
}

// instBlock is a vrrp_instance being read: the instance, its path in the
// configuration, and whether the block set the version.
type instBlock struct {
	in         *config.Instance
	p          string
	versionSet bool
}

// coreHandlers read the election: interface, VRID, priority, timers,
// version, preemption.
func (b *instBlock) coreHandlers(m *mapper) map[string]handler {
	in, p := b.in, b.p
	return map[string]handler{
		"state": func(c *Node) {
			m.warnf(c.Pos, "state %s is not used: halb starts every instance as backup and the priority elects the master (keepalived's initial state only shortens the first election)", c.Arg(0))
		},
		"interface": func(c *Node) {
			if !m.needArgs(c, 1) {
				return
			}
			if _, err := netip.ParseAddr(c.Arg(0)); err == nil {
				m.errorf(c.ArgPos(0), "interface %s: an address, not an interface name", c.Arg(0))
				return
			}
			if name := c.Arg(0); strings.HasPrefix(name, "<") && strings.HasSuffix(name, ">") {
				m.errorf(c.ArgPos(0), "interface %s: a placeholder, not an interface name (keepalived refuses a missing interface)", name)
				return
			}
			if c.Arg(0) == "lo" {
				m.errorf(c.ArgPos(0), "interface: VRRP cannot run on the loopback interface (keepalived refuses it too)")
				return
			}
			in.Interface = c.Arg(0)
			m.set(p+".interface", c.ArgPos(0))
		},
		"virtual_router_id": func(c *Node) {
			in.VRID, _ = m.intArg(c, 0, 1, 255)
			m.set(p+".vrid", c.ArgPos(0))
		},
		"priority": func(c *Node) {
			if !m.needArgs(c, 1) {
				return
			}
			m.set(p+".priority", c.ArgPos(0))
			v, err := strconv.Atoi(c.Arg(0))
			if err != nil || v < 1 || v > 255 {
				m.warnf(c.ArgPos(0), "priority: %q is not a number from 1 to 255: keepalived uses its default, 100, and so does halb%s", c.Arg(0), m.undefinedHint(c.Arg(0)))
				v = 100
			}
			in.Priority = v
		},
		"advert_int": func(c *Node) {
			in.AdvertInterval, _ = m.timerArg(c, 0)
			m.set(p+".advert_interval", c.ArgPos(0))
		},
		"version": func(c *Node) {
			in.Version, _ = m.intArg(c, 0, 2, 3)
			b.versionSet = true
			m.set(p+".version", c.ArgPos(0))
		},
		"native_ipv6": func(c *Node) {
			in.Version = 3
			b.versionSet = true
			m.set(p+".version", c.Pos)
		},
		"nopreempt": func(c *Node) {
			in.Preempt = false
			m.set(p+".preempt", c.Pos)
		},
		"preempt": noop,
		"preempt_delay": func(c *Node) {
			in.PreemptDelay, _ = m.timerArg(c, 0)
			m.set(p+".preempt_delay", c.ArgPos(0))
		},
	}
}

// addressHandlers read authentication, unicast peers and VIPs.
func (b *instBlock) addressHandlers(m *mapper) map[string]handler {
	in, p := b.in, b.p
	return map[string]handler{
		"authentication": func(c *Node) { m.authentication(c, in, p) },
		"unicast_src_ip": func(c *Node) {
			in.UnicastSource, _ = m.addrArg(c, 0)
			m.set(p+".unicast_source", c.ArgPos(0))
		},
		"unicast_peer": func(c *Node) {
			for _, w := range words(c) {
				a, err := netip.ParseAddr(w.Name)
				if err != nil {
					m.warnf(w.Pos, "unicast_peer: %q is not an address: keepalived skips it, and so does halb%s", w.Name, m.undefinedHint(w.Name))
					continue
				}
				if len(w.Args) > 0 {
					m.warnf(w.ArgPos(0), "unicast_peer: %s is not supported: halb checks the TTL of unicast adverts as the RFC says", w.Arg(0))
				}
				in.UnicastPeers = append(in.UnicastPeers, a.Unmap())
				m.set(fmt.Sprintf("%s.unicast_peers[%d]", p, len(in.UnicastPeers)-1), w.Pos)
			}
		},
		"virtual_ipaddress":          m.vips(in, p, false),
		"virtual_ipaddress_excluded": m.vips(in, p, true),
	}
}

// trackHandlers read the tracked interfaces and scripts.
func (b *instBlock) trackHandlers(m *mapper) map[string]handler {
	in, p := b.in, b.p
	return map[string]handler{
		"track_interface": func(c *Node) {
			m.trackedObjects(c, "track_interface", p+".track_interfaces", &in.TrackInterface)
		},
		"track_script": func(c *Node) {
			for _, w := range words(c) {
				t := config.TrackedObject{Name: w.Name}
				switch {
				case w.Arg(0) == "weight" && len(w.Args) == 2:
					t.Weight, _ = m.intArg(w, 1, -254, 254)
				case len(w.Args) > 0:
					m.errorf(w.ArgPos(0), "track_script: expected \"weight N\", got %q (weight reverse is not supported)", strings.Join(argVals(w.Args), " "))
				default:
					for _, s := range m.cfg.VRRP.Scripts {
						if s.Name == w.Name {
							t.Weight = s.Weight
						}
					}
				}
				in.TrackScripts = append(in.TrackScripts, t)
				m.set(fmt.Sprintf("%s.track_scripts[%d]", p, len(in.TrackScripts)-1), w.Pos)
			}
		},
	}
}

// trackedObjects reads the lines "NAME [weight N]" of a track_interface
// or track_process block (keyword) into *list, each written at path[i].
func (m *mapper) trackedObjects(c *Node, keyword, path string, list *[]config.TrackedObject) {
	for _, w := range words(c) {
		t := config.TrackedObject{Name: w.Name}
		if w.Arg(0) == "weight" && len(w.Args) == 2 {
			t.Weight, _ = m.intArg(w, 1, -254, 254)
		} else if len(w.Args) > 0 {
			m.errorf(w.ArgPos(0), "%s: expected \"weight N\", got %q (weight reverse is not supported)", keyword, strings.Join(argVals(w.Args), " "))
		}
		*list = append(*list, t)
		m.set(fmt.Sprintf("%s[%d]", path, len(*list)-1), w.Pos)
	}
}

// notifyHandlers read notifications, gratuitous ARP and the IPVS sync
// daemon the instance drives.
func (b *instBlock) notifyHandlers(m *mapper) map[string]handler {
	in, p := b.in, b.p
	garp := func(field string, set func(c *Node)) handler {
		return func(c *Node) {
			set(c)
			m.set(p+".garp."+field, c.ArgPos(0))
		}
	}
	notifyState := m.ignore(notifyInstead)
	return map[string]handler{
		"notify":                     m.notifyExec,
		"notify_master":              notifyState,
		"notify_backup":              notifyState,
		"notify_fault":               notifyState,
		"notify_stop":                notifyState,
		"notify_deleted":             notifyState,
		"notify_master_rx_lower_pri": notifyState,
		"smtp_alert":                 m.ignore("with notify.smtp set, halb mails every state change"),
		"garp_master_delay": garp("second_burst", func(c *Node) {
			in.GARP.SecondBurst, _ = m.timerArg(c, 0)
		}),
		"garp_master_repeat": garp("count", func(c *Node) {
			in.GARP.Count, _ = m.intArg(c, 0, 0, 1<<16)
		}),
		"garp_master_refresh": garp("refresh", func(c *Node) {
			in.GARP.Refresh, _ = m.timerArg(c, 0)
		}),
		"garp_master_refresh_repeat": m.ignore("halb sends one gratuitous ARP per refresh"),
		"garp_lower_prio_delay":      m.instanceLowerPrioGARP(in, p, "lower_priority_delay"),
		"garp_lower_prio_repeat":     m.instanceLowerPrioGARP(in, p, "lower_priority_count"),
		"lvs_sync_daemon_interface": func(c *Node) {
			if m.needArgs(c, 1) {
				m.cfg.IPVSSync = &config.IPVSSync{Interface: c.Arg(0), Instance: in.Name}
				m.syncAt = c.Pos
				m.set("ipvs_sync", c.Pos)
				m.set("ipvs_sync.interface", c.ArgPos(0))
			}
		},
	}
}

// unsupportedHandlers are the keywords halb ignores (a warning) or
// refuses (an error), each saying what halb does instead.
func (b *instBlock) unsupportedHandlers(m *mapper) map[string]handler {
	notTracked := m.reject("halb tracks interfaces and scripts only; the instance would elect without this input")
	return map[string]handler{
		"mcast_src_ip":            m.ignore("halb sends multicast adverts from the interface's primary address"),
		"track_file":              notTracked,
		"track_bfd":               notTracked,
		"track_src_ip":            notTracked,
		"strict_mode":             m.ignore("halb follows the RFC on the wire and adds no firewall rules"),
		"debug":                   m.ignore("use halb run --log-level debug"),
		"unicast_ttl":             m.ignore("halb sends unicast adverts with TTL 255 as the RFC says"),
		"check_unicast_src":       m.ignore("halb accepts unicast adverts from its configured peers"),
		"unicast_fault_no_peer":   m.ignore("an instance with no peer in halb stays backup until it elects itself"),
		"skip_check_adv_addr":     m.ignore("halb checks the address list of every advert, and drops those that differ unless from the address owner"),
		"higher_prio_send_advert": m.ignore("halb answers a lower-priority master with its own advert as the RFC says"),
		"lower_prio_no_advert":    m.ignore("halb follows the RFC"),
		"kernel_rx_buf_size":      m.ignore("halb sizes its socket buffers itself"),
		"linkbeat_use_polling":    m.ignore("halb watches links over netlink"),
		"down_timer_adverts":      m.ignore("halb waits the RFC's master-down interval"),
		"old_unicast_checksum":    m.reject("halb computes unicast checksums as current keepalived does; a peer expecting the old form would drop them"),
	}
}

// extraHandlers read what an instance carries besides its VIPs: vmac,
// routes and rules, tracked processes, and whether it accepts packets to
// its VIPs.
func (b *instBlock) extraHandlers(m *mapper) map[string]handler {
	in, p := b.in, b.p
	return map[string]handler{
		"dont_track_primary": m.flag(p+".ignore_interface_down", &in.IgnoreInterfaceDown),
		"use_vmac":           m.useVMAC(in, p),
		"vmac_xmit_base":     m.flag(p+".vmac_xmit_base", &in.VMACXmitBase),
		"virtual_routes":     m.routeLines(&in.Routes, p+".routes"),
		"virtual_rules":      m.ruleLines(&in.Rules, p+".rules"),
		"track_process":      m.trackProcesses(in, p),
		"accept":             noop,
		"no_accept":          m.flag(p+".no_accept", &in.NoAccept),
	}
}

const notifyInstead = "halb runs no per-state scripts; one keepalived-style notify program (notify SCRIPT, which gets the state as its third argument) can do their work"

// notifyExec maps "notify SCRIPT [USER [GROUP]]" of an instance or sync
// group to notify.exec, which halb runs with keepalived's arguments for
// VRRP changes. It is one program for the whole node.
func (m *mapper) notifyExec(c *Node) {
	if !m.needArgs(c, 1) {
		return
	}
	words := splitCommand(c.Arg(0))
	if len(words) != 1 || !strings.HasPrefix(words[0], "/") {
		m.errorf(c.ArgPos(0), "notify %s is not supported: halb runs one program, named by its absolute path, without arguments", c.Arg(0))
		return
	}
	n := &m.cfg.Notify
	if n.Exec != "" && n.Exec != words[0] {
		m.errorf(c.ArgPos(0), "notify %s is not supported: halb runs one notify program for all instances and groups, and %s comes first", words[0], n.Exec)
		return
	}
	user := m.cfg.ScriptUser
	if len(c.Args) > 1 {
		user = c.Arg(1)
	}
	if n.Exec == "" {
		m.warnf(c.Pos, "notify %s: halb runs it as notify.exec for every instance, with keepalived's arguments for VRRP changes (INSTANCE|GROUP name STATE priority), and also for health, quorum and reload events (HEALTH, QUORUM or RELOAD first)", words[0])
		n.Exec, n.ExecUser = words[0], user
		m.set("notify.exec", c.ArgPos(0))
		if len(c.Args) > 1 {
			m.set("notify.exec_user", c.ArgPos(1))
		}
	}
}

func (m *mapper) authentication(c *Node, in *config.Instance, p string) {
	unknown, typed := false, ""
	m.walk("authentication", c.Children, map[string]handler{
		"auth_type": func(n *Node) {
			typed = n.Arg(0)
			if kind := strings.ToUpper(n.Arg(0)); kind == "AH" {
				in.AuthType = "ah"
				m.set(p+".auth_type", n.ArgPos(0))
			} else if kind != "PASS" {
				unknown = true
				m.warnf(n.ArgPos(0), "auth_type: %q is not PASS or AH: keepalived ignores it and sends adverts without authentication, and so does halb", n.Arg(0))
			}
		},
		"auth_pass": func(n *Node) {
			if m.needArgs(n, 1) {
				in.AuthPassword = n.Arg(0)
				if len(in.AuthPassword) > 8 {
					// keepalived uses the first 8 characters.
					in.AuthPassword = in.AuthPassword[:8]
				}
				m.set(p+".auth_password", n.ArgPos(0))
			}
		},
	})
	if unknown {
		in.AuthPassword = ""
	}
	if !unknown && typed != "" && in.AuthPassword == "" {
		m.warnf(c.Pos, "authentication: auth_type %s without auth_pass: keepalived ignores the block and sends adverts without authentication, and so does halb", typed)
		in.AuthType = ""
		delete(m.written, p+".auth_type")
	}
}

func (m *mapper) syncGroup(n *Node) {
	i := len(m.cfg.VRRP.SyncGroups)
	p := fmt.Sprintf("vrrp.sync_groups[%d]", i)
	g := config.SyncGroup{Name: n.Arg(0)}
	m.set(p, n.Pos)
	m.origin(p, n)
	m.set(p+".name", n.ArgPos(0))
	notifyState := m.ignore(notifyInstead)
	trackingWeight := false
	m.walk("vrrp_sync_group", n.Children, map[string]handler{
		"group": func(c *Node) {
			for _, w := range words(c) {
				g.Instances = append(g.Instances, w.Name)
				m.set(fmt.Sprintf("%s.instances[%d]", p, len(g.Instances)-1), w.Pos)
			}
			m.set(p+".instances", c.Pos)
		},
		"notify_master":              notifyState,
		"notify_backup":              notifyState,
		"notify_fault":               notifyState,
		"notify_stop":                notifyState,
		"notify":                     m.notifyExec,
		"smtp_alert":                 m.ignore("with notify.smtp set, halb mails every state change"),
		"global_tracking":            m.ignore("halb applies each instance's own tracking"),
		"sync_group_tracking_weight": func(*Node) { trackingWeight = true },
		"track_interface":            m.reject("halb tracks interfaces per instance; move it into each vrrp_instance"),
		"track_script":               m.reject("halb tracks scripts per instance; move it into each vrrp_instance"),
		"track_file":                 m.reject("halb tracks interfaces and scripts only"),
		"track_process":              m.ignore("halb tracks processes per instance; list them in each member's track_process"),
	})
	if !trackingWeight {
		m.syncMembers = append(m.syncMembers, g.Instances...)
	}
	m.cfg.VRRP.SyncGroups = append(m.cfg.VRRP.SyncGroups, g)
}

// unknownScripts does what keepalived does to a track_script that names
// no vrrp_script: it leaves it out.
func (m *mapper) unknownScripts() {
	known := map[string]bool{}
	for _, s := range m.cfg.VRRP.Scripts {
		known[s.Name] = true
	}
	for i := range m.cfg.VRRP.Instances {
		in := &m.cfg.VRRP.Instances[i]
		p := fmt.Sprintf("vrrp.instances[%d].track_scripts", i)
		kept := in.TrackScripts[:0]
		for j, t := range in.TrackScripts {
			from := fmt.Sprintf("%s[%d]", p, j)
			loc := m.written[from]
			delete(m.written, from)
			if !known[t.Name] {
				m.diags = append(m.diags, config.Diagnostic{File: loc.File, Pos: loc.Pos, Severity: config.Warning,
					Message: fmt.Sprintf("track_script %s: no vrrp_script of that name: keepalived leaves it out, and so does halb", t.Name)})
				continue
			}
			m.written[fmt.Sprintf("%s[%d]", p, len(kept))] = loc
			kept = append(kept, t)
		}
		if len(kept) == 0 {
			kept = nil
		}
		in.TrackScripts = kept
	}
}

// syncWeights does what keepalived does to the members of a sync group
// without sync_group_tracking_weight: tracked interfaces and scripts put
// the instance in FAULT, their weights are ignored.
func (m *mapper) syncWeights() {
	for i, in := range m.cfg.VRRP.Instances {
		if !slices.Contains(m.syncMembers, in.Name) {
			continue
		}
		p := fmt.Sprintf("vrrp.instances[%d]", i)
		for j := range in.TrackInterface {
			m.zeroWeight(&in.TrackInterface[j], fmt.Sprintf("%s.track_interfaces[%d]", p, j))
		}
		for j := range in.TrackScripts {
			m.zeroWeight(&in.TrackScripts[j], fmt.Sprintf("%s.track_scripts[%d]", p, j))
		}
	}
}

func (m *mapper) zeroWeight(t *config.TrackedObject, path string) {
	if t.Weight == 0 {
		return
	}
	loc := m.written[path]
	m.diags = append(m.diags, config.Diagnostic{File: loc.File, Pos: loc.Pos, Severity: config.Warning,
		Message: fmt.Sprintf("the weight %d of %s is ignored, as keepalived ignores it in a sync group: its failure puts the instance in FAULT (sync_group_tracking_weight keeps weights)", t.Weight, t.Name)})
	t.Weight = 0
}
