// Package events receives what Talos nodes report about themselves while
// Onramp serves them, and puts it on each machine's timeline:
//
//   - Talos events (talos.events.sink=, or the EventSinkConfig document): a
//     gRPC server for siderolink's events API, EventSinkService.Publish
//     (github.com/siderolabs/siderolink/api/events). Talos' EventsSinkController
//     dials it with plain gRPC (it expects the SideroLink WireGuard tunnel, or
//     here the cart switch, for privacy) and publishes every runtime event as
//     an EventRequest whose Data is an Any holding one of machinery's
//     machine.*Event messages (type URL "type.googleapis.com/machine.X" from
//     anypb.New, or "talos/runtime/machine.X" as Talos' own event stream
//     names them). A failed Publish makes Talos reconnect and send the event
//     again, so refusing (ResourceExhausted) under load loses nothing.
//   - Kernel logs (talos.logging.kernel=, or the KmsgLogConfig document): Talos'
//     KmsgLogDeliveryController sends every /dev/kmsg record as one JSON object
//     per line over TCP, or one per datagram over UDP, with the fields
//     "msg", "facility", "priority", "seq", "clock" (µs since boot),
//     "talos-level" and "talos-time" (RFC 3339).
//
// Each item becomes a netboot.Event (kinds EventTalos and EventKmsg) emitted
// on a netboot.Sink with the sender's MAC address, resolved from its source
// IP through a Resolver (Onramp's DHCP leases, then the kernel's neighbour
// table). Both servers listen through netboot.OnLinkListenConfig, so only
// machines on the cart network get in, and both are bounded: connections,
// line and message sizes, and a per-peer rate so one chatty node cannot starve
// the others. Garbage is counted and logged at a limited rate, never fatal.
package events
