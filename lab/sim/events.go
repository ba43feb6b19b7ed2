package sim

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/siderolabs/siderolink/api/events"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// SiderolinkSink publishes events to a talos.events.sink= endpoint with the
// siderolink events API (EventSinkService.Publish), the way Talos does: plain gRPC
// (Talos relies on the SideroLink WireGuard tunnel for privacy; the lab network is
// a private bridge), payloads as Any with type URL "talos/runtime/<message name>".
type SiderolinkSink struct {
	conn    *grpc.ClientConn
	client  events.EventSinkServiceClient
	actorID string
	clock   func() time.Time

	mu  sync.Mutex
	seq uint32
}

// NewSiderolinkSink prepares a sink client for addr (host:port). No connection is made
// until the first Publish.
func NewSiderolinkSink(addr string, clock func() time.Time) (*SiderolinkSink, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dial event sink %s: %w", addr, err)
	}

	if clock == nil {
		clock = time.Now
	}

	return &SiderolinkSink{conn: conn, client: events.NewEventSinkServiceClient(conn), clock: clock}, nil
}

// Close closes the connection.
func (k *SiderolinkSink) Close() error { return k.conn.Close() }

// Publish sends one event (a machinery machine.*Event message).
func (k *SiderolinkSink) Publish(ctx context.Context, ev proto.Message) error {
	value, err := proto.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}

	_, err = k.client.Publish(ctx, &events.EventRequest{
		Data:    &anypb.Any{TypeUrl: "talos/runtime/" + string(ev.ProtoReflect().Descriptor().FullName()), Value: value},
		Id:      k.nextID(),
		ActorId: k.actorID,
	})
	if err != nil {
		return fmt.Errorf("publish event: %w", err)
	}

	return nil
}

// nextID makes a sortable 20-character id like the xids Talos uses: 4 bytes of
// seconds, 5 random bytes, 3 bytes of counter, base32hex.
func (k *SiderolinkSink) nextID() string {
	k.mu.Lock()
	k.seq++
	seq := k.seq
	k.mu.Unlock()

	var b [12]byte

	binary.BigEndian.PutUint32(b[0:4], uint32(k.clock().Unix()))
	_, _ = rand.Read(b[4:9])
	b[9], b[10], b[11] = byte(seq>>16), byte(seq>>8), byte(seq)

	return base32.HexEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])
}
