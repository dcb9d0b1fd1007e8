// Package keepalived reads keepalived.conf files as keepalived does —
// blocks, comments, includes, conditional lines, parameters, ~SEQ, ~LST — and
// maps them onto halb's configuration. Every keyword halb does not support
// is reported where it was written, as a warning saying what halb does
// instead, or as an error when ignoring it would change what the node does.
// Explicit fwmark numbers stay as they are (external marks), so an imported
// site keeps its firewall rules.
package keepalived
