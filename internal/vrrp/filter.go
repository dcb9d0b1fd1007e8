package vrrp

import (
	"fmt"
	"maps"
	"slices"

	"golang.org/x/net/bpf"

	"halb/internal/vrrp/packet"
)

// filterSpec is what a socket's kernel filter lets through: adverts of
// a version (the key) for its VRIDs, sorted (the instances on the
// socket).
type filterSpec map[int][]int

// filterOf is the filter spec of the instances on socket s: their
// versions, and on IPv4 the other version too for an instance that has
// not yet warned of adverts of another version.
func filterOf(instances map[string]*instance, s conn) filterSpec {
	f := filterSpec{}
	for _, ins := range instances {
		if ins.sock != s {
			continue
		}
		vs := []int{ins.cfg.Version}
		if !ins.versionReported && ins.cfg.Family() == 4 {
			vs = []int{2, 3}
		}
		for _, v := range vs {
			if !slices.Contains(f[v], ins.cfg.VRID) {
				f[v] = append(f[v], ins.cfg.VRID)
				slices.Sort(f[v])
			}
		}
	}
	return f
}

func (f filterSpec) equal(g filterSpec) bool { return maps.EqualFunc(f, g, slices.Equal) }

// vrrpMin is the shortest VRRP message: a VRRPv3 header without
// addresses.
const vrrpMin = 8

// filterAccept is what an accepting filter returns: keep the whole
// datagram.
const filterAccept = 0xffff

// filterProgram is a classic BPF socket filter that drops in the kernel
// what can never be an advert for the instances of spec: another
// version or type, another VRID, a message shorter than a VRRP header,
// and on IPv4 a multicast datagram whose TTL is not 255 (a unicast one
// may come through routers, as packet.Decode allows). IPv4 raw sockets
// see the IP header first; withAH, the AH header follows it. IPv6 raw
// sockets see the message alone: the hop limit is left to Decode.
func filterProgram(family int, withAH bool, spec filterSpec) ([]bpf.Instruction, error) {
	// drop and accept are placeholders resolved to jumps to the final
	// "return 0" and "return all" (no other jump goes that far in a
	// program of at most 255 instructions).
	const drop, accept = 0xff, 0xfe
	var p []bpf.Instruction
	if family == 4 {
		p = append(p,
			// A multicast destination (224/4) needs TTL 255.
			bpf.LoadAbsolute{Off: 16, Size: 1},
			bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf0},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 0xe0, SkipTrue: 2},
			bpf.LoadAbsolute{Off: 8, Size: 1},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 255, SkipTrue: drop},
			// X: where the VRRP message begins.
			bpf.LoadMemShift{Off: 0},
		)
		if withAH {
			p = append(p,
				bpf.LoadExtension{Num: bpf.ExtLen},
				bpf.ALUOpX{Op: bpf.ALUOpSub},
				bpf.JumpIf{Cond: bpf.JumpLessThan, Val: 12, SkipTrue: drop},
				bpf.LoadIndirect{Off: 0, Size: 1},
				bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: packet.Protocol, SkipTrue: drop},
				// The AH header is (payload length + 2) × 4 bytes.
				bpf.LoadIndirect{Off: 1, Size: 1},
				bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: 2},
				bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 2},
				bpf.ALUOpX{Op: bpf.ALUOpAdd},
				bpf.TAX{},
			)
		}
	}
	p = append(p,
		bpf.LoadExtension{Num: bpf.ExtLen},
		bpf.ALUOpX{Op: bpf.ALUOpSub}, // X is 0 on IPv6
		bpf.JumpIf{Cond: bpf.JumpLessThan, Val: vrrpMin, SkipTrue: drop},
	)
	for _, v := range slices.Sorted(maps.Keys(spec)) {
		ids := spec[v]
		p = append(p,
			// Version and type 1 (advertisement), or the next version.
			bpf.LoadIndirect{Off: 0, Size: 1},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(v<<4 | 1), SkipTrue: uint8(len(ids) + 2)},
			bpf.LoadIndirect{Off: 1, Size: 1},
		)
		for _, id := range ids {
			p = append(p, bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(id), SkipTrue: accept})
		}
		p = append(p, bpf.Jump{Skip: drop})
	}
	p = append(p, bpf.RetConstant{Val: 0}, bpf.RetConstant{Val: filterAccept})
	if len(p) > 255 {
		return nil, fmt.Errorf("VRRP socket filter: %d instructions, too many to jump over", len(p))
	}
	// Resolve the drops and accepts: the last two instructions.
	for i, ins := range p {
		toDrop, toAccept := uint8(len(p)-2-i-1), uint8(len(p)-1-i-1)
		switch j := ins.(type) {
		case bpf.JumpIf:
			switch j.SkipTrue {
			case drop:
				j.SkipTrue = toDrop
			case accept:
				j.SkipTrue = toAccept
			}
			p[i] = j
		case bpf.Jump:
			j.Skip = uint32(toDrop)
			p[i] = j
		}
	}
	return p, nil
}
