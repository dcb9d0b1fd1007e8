package bgp

import (
	"context"
	"log/slog"
	"net/netip"
)

// notificationTap passes gobgp's log records on to the daemon's handler,
// and reports each BGP NOTIFICATION sent or received to onNotification,
// with its administrative reason ("BFD is down") if any.
// gobgp reports some of them only in its log: an OPEN refused on an
// outgoing connection (a wrong AS number, say) changes no session state.
type notificationTap struct {
	next           slog.Handler
	attrs          []slog.Attr
	onNotification func(peer netip.Addr, sent bool, code, subcode uint8, reason string)
}

func (h *notificationTap) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.next.Enabled(ctx, l)
}

func (h *notificationTap) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "sent notification" || r.Message == "received notification" {
		var peer netip.Addr
		var code, subcode int64
		var reason string
		visit := func(a slog.Attr) bool {
			switch a.Key {
			case "Key":
				peer, _ = netip.ParseAddr(a.Value.String())
			case "Code":
				code = a.Value.Int64()
			case "Subcode":
				subcode = a.Value.Int64()
			case "Communicated-Reason":
				reason = a.Value.String()
			}
			return true
		}
		for _, a := range h.attrs {
			visit(a)
		}
		r.Attrs(visit)
		if peer.IsValid() {
			h.onNotification(peer, r.Message == "sent notification", uint8(code), uint8(subcode), reason)
		}
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *notificationTap) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &notificationTap{next: h.next.WithAttrs(attrs), attrs: append(h.attrs[:len(h.attrs):len(h.attrs)], attrs...), onNotification: h.onNotification}
}

func (h *notificationTap) WithGroup(name string) slog.Handler {
	return &notificationTap{next: h.next.WithGroup(name), attrs: h.attrs, onNotification: h.onNotification}
}
