// Package broker is the MQTT broker embedded in sm-edge (`sm-edge broker`),
// so a demo or a small site needs no separate Mosquitto. It wraps
// github.com/mochi-mqtt/server/v2 and configures it not to drop QoS 1
// messages, which its defaults do (see SERVICES.md):
//
//   - mochi keeps every unacknowledged QoS 1/2 message of a session in an
//     "inflight" store keyed by MQTT packet id, so one session can hold at
//     most 65,535 of them (Capabilities.MaximumInflight, default 8,192).
//     A publish beyond that is dropped. We raise MaximumInflight to 65,535
//     and add backpressure (below) so the store never fills.
//   - each connected client has an outbound channel of
//     Capabilities.MaximumClientWritesPending packets (default 8,192); when
//     a slow subscriber lets it fill, mochi drops the publish, QoS 1
//     included. We size it above MaximumInflight plus room for QoS 0, so a
//     QoS 1 message always fits (a QoS 1 entry in the channel is also in
//     the inflight store, which backpressure keeps below its limit).
//   - MaximumMessageExpiryInterval (default one day) expires queued
//     messages; we set it to 0 (never), so a persistent session that is
//     away for longer still gets everything.
//   - Backpressure: a hook runs before a publish is routed. When a
//     matching subscriber session already holds HighWater unacknowledged
//     messages, the hook waits until it has fewer. That stalls only the
//     publishing connection (its QoS 1 PUBACK is withheld), so the
//     publisher slows to the subscriber's pace instead of losing data.
//     While a persistent subscriber is disconnected the publisher stalls
//     once HighWater messages are queued for it (default 60,000); QoS 0
//     publishes are never held. A publisher held longer than 1.5 times its
//     keep-alive is disconnected (by mochi's deadline or its own ping
//     timeout) before its message is routed; it has no PUBACK, so an MQTT
//     client resends it after reconnecting, and nothing is lost.
//   - Session resume: mochi acknowledges a QoS 1 publish before it routes
//     it, and a persistent session that resumes on a new connection in
//     between loses the message (mochi v2.7.9 queues it on the replaced
//     connection; see guardHook.OnQosPublish). The hook moves such a
//     message to the resumed session (Stats.Adopted). mochi's resume also
//     reports every message it moves as dropped: we neither count those as
//     discarded nor let the bolt store delete their records.
//
// With Config.DataDir set, sessions, subscriptions, inflight messages and
// retained messages are stored in a bbolt file (mochi's bolt hook), so a
// persistent subscriber's queue survives a broker restart. The file is
// written without fsync (bbolt NoSync): it survives a crash of the
// process, not of the machine, like Mosquitto's periodic autosave. mochi
// writes every queued message to it one transaction at a time, which costs
// throughput: measured here (BenchmarkQoS1Throughput, 200-byte QoS 1, one
// publisher, one subscriber) about 29k msg/s in memory, 7.5k msg/s with a
// data dir, against 41k msg/s for Mosquitto 2.0 with the no-drop config in
// the same run. Put Mosquitto in front of a busy site; the embedded broker
// is for demos, tests and small sites.
//
// Every drop mochi still makes (QoS 0 to a slow subscriber, or a limit we
// could not prevent) is counted (Stats) and logged at Error.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/hooks/storage/bolt"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"go.etcd.io/bbolt"
)

// Limits of the no-drop configuration.
const (
	// MaxInflight is mochi's ceiling on unacknowledged QoS 1/2 messages
	// per session: the MQTT packet id is 16 bits.
	MaxInflight = 65535
	// DefaultHighWater leaves headroom below MaxInflight: several
	// publishers may each pass the check at the same moment.
	DefaultHighWater = 60000
	// writesPending is the outbound channel per client: MaxInflight QoS 1
	// entries plus as many QoS 0 ones. 128k pointers is 1 MiB per client.
	writesPending = 2 * 65536
	// backpressurePoll is how often a held publish rechecks the
	// subscriber; short against a subscriber's ack round trip.
	backpressurePoll = 500 * time.Microsecond
)

// Config configures the embedded broker.
type Config struct {
	// Listen is the TCP address, e.g. 127.0.0.1:1883.
	Listen string
	// DataDir, when set, keeps sessions and queued messages in
	// DataDir/broker.db across restarts.
	DataDir string
	// HighWater is the number of unacknowledged messages a subscriber
	// session may hold before publishers to it are held (0: default).
	HighWater int
}

// Stats are the broker's counters.
type Stats struct {
	// Received is the number of PUBLISH packets received from clients.
	Received int64
	// Sent is the number of PUBLISH packets sent to subscribers.
	Sent int64
	// Dropped counts messages mochi dropped for a connected or persistent
	// subscriber (full outbound channel or inflight store). It stays 0
	// for QoS 1 under the no-drop configuration.
	Dropped int64
	// Discarded counts queued QoS 1/2 messages thrown away with a clean
	// session when its client disconnected, as MQTT requires.
	Discarded int64
	// Held counts publishes that waited for a slow subscriber.
	Held int64
	// Adopted counts messages routed to a persistent session while it
	// resumed on a new connection, which mochi would have lost
	// (guardHook.OnQosPublish) and which were moved to the new one.
	Adopted int64
	// Clients is the number of connected clients.
	Clients int64
}

// Broker is a running embedded broker.
type Broker struct {
	cfg    Config
	log    *slog.Logger
	srv    *mqtt.Server
	hook   *guardHook
	addr   string
	closed atomic.Bool
}

// New configures a broker; Start listens.
func New(cfg Config, log *slog.Logger) (*Broker, error) {
	return newBroker(cfg, log, nil)
}

// newBroker is New with extra mochi hooks placed first (tests use them to
// hold the broker at a chosen point).
func newBroker(cfg Config, log *slog.Logger, first []mqtt.Hook) (*Broker, error) {
	if cfg.Listen == "" {
		return nil, errors.New("broker: listen address is empty")
	}
	if cfg.HighWater <= 0 {
		cfg.HighWater = DefaultHighWater
	}
	if cfg.HighWater > MaxInflight-1000 {
		return nil, fmt.Errorf("broker: high water %d above %d (mochi holds at most %d per session)", cfg.HighWater, MaxInflight-1000, MaxInflight)
	}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumInflight = MaxInflight
	caps.MaximumClientWritesPending = writesPending
	caps.MaximumMessageExpiryInterval = 0
	caps.ReceiveMaximum = MaxInflight
	srv := mqtt.New(&mqtt.Options{
		Capabilities:             caps,
		Logger:                   log.With("component", "mochi"),
		ClientNetWriteBufferSize: 32 << 10,
		ClientNetReadBufferSize:  32 << 10,
	})
	b := &Broker{cfg: cfg, log: log, srv: srv, addr: cfg.Listen}
	b.hook = &guardHook{srv: srv, log: log, highWater: cfg.HighWater, done: &b.closed}
	for _, h := range first {
		if err := srv.AddHook(h, nil); err != nil {
			return nil, fmt.Errorf("broker: add hook %s: %w", h.ID(), err)
		}
	}
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, fmt.Errorf("broker: add auth hook: %w", err)
	}
	// The store comes before the guard hook: the guard's OnQosPublish
	// corrects what the store wrote for a message it moves (adopt).
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("broker: create data dir %q: %w", cfg.DataDir, err)
		}
		path := filepath.Join(cfg.DataDir, "broker.db")
		b.hook.store = new(sessionStore)
		err := srv.AddHook(b.hook.store, &bolt.Options{
			Path:    path,
			Options: &bbolt.Options{Timeout: 2 * time.Second, NoSync: true},
		})
		if err != nil {
			return nil, fmt.Errorf("broker: open session store %q: %w", path, err)
		}
	}
	if err := srv.AddHook(b.hook, nil); err != nil {
		return nil, fmt.Errorf("broker: add guard hook: %w", err)
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: cfg.Listen})
	if err := srv.AddListener(tcp); err != nil {
		return nil, fmt.Errorf("broker: listen on %s: %w", cfg.Listen, err)
	}
	return b, nil
}

// Addr is the listen address.
func (b *Broker) Addr() string { return b.addr }

// URL is the broker's address for clients, tcp://host:port.
func (b *Broker) URL() string { return "tcp://" + b.addr }

// Run serves until ctx is done, then closes the listeners and saves the
// sessions.
func (b *Broker) Run(ctx context.Context) error {
	if err := b.srv.Serve(); err != nil {
		return fmt.Errorf("broker: serve: %w", err)
	}
	b.log.Info("broker listening", "component", "broker", "addr", b.addr, "data_dir", b.cfg.DataDir, "high_water", b.cfg.HighWater)
	<-ctx.Done()
	return b.Close()
}

// Close stops the broker. It is safe to call more than once.
func (b *Broker) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	if err := b.srv.Close(); err != nil {
		return fmt.Errorf("broker: close: %w", err)
	}
	return nil
}

// Stats returns the current counters.
func (b *Broker) Stats() Stats {
	info := b.srv.Info
	return Stats{
		Received:  atomic.LoadInt64(&info.MessagesReceived),
		Sent:      atomic.LoadInt64(&info.MessagesSent),
		Dropped:   b.hook.dropped.Load() + atomic.LoadInt64(&info.InflightDropped),
		Discarded: b.hook.discarded.Load(),
		Held:      b.hook.held.Load(),
		Adopted:   b.hook.adopted.Load(),
		Clients:   atomic.LoadInt64(&info.ClientsConnected),
	}
}

// guardHook holds publishes while a subscriber is full and counts drops.
type guardHook struct {
	mqtt.HookBase
	srv       *mqtt.Server
	log       *slog.Logger
	highWater int
	done      *atomic.Bool
	store     *sessionStore // nil without a data dir
	// established holds the clients (*mqtt.Client) whose CONNACK and
	// resent messages have been written: adopt writes to them directly.
	established sync.Map
	dropped     atomic.Int64
	discarded   atomic.Int64
	held        atomic.Int64
	adopted     atomic.Int64
}

func (h *guardHook) ID() string { return "smartmaint-no-drop" }

func (h *guardHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnPublish, mqtt.OnPublishDropped, mqtt.OnQosDropped, mqtt.OnQosPublish,
		mqtt.OnSessionEstablished, mqtt.OnDisconnect:
		return true
	}
	return false
}

// OnPublish waits while any subscriber of the topic holds HighWater or
// more unacknowledged messages. It runs on the publisher's connection
// goroutine, so only that publisher waits.
func (h *guardHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Qos == 0 {
		return pk, nil
	}
	// Fast path: the broker-wide inflight count bounds every session's.
	if atomic.LoadInt64(&h.srv.Info.Inflight) < int64(h.highWater) {
		return pk, nil
	}
	counted := false
	for !h.done.Load() && !cl.Closed() {
		full := h.fullSubscriber(pk.TopicName)
		// A client that subscribes to what it publishes cannot be held:
		// its acknowledgements arrive on the connection we would block.
		if full == "" || full == cl.ID {
			return pk, nil
		}
		if !counted {
			counted = true
			h.held.Add(1)
		}
		time.Sleep(backpressurePoll)
	}
	return pk, nil
}

// fullSubscriber returns the id of a subscriber of topic whose inflight
// store is at the high-water mark, or "".
func (h *guardHook) fullSubscriber(topic string) string {
	subs := h.srv.Topics.Subscribers(topic)
	for id := range subs.Subscriptions {
		if c, ok := h.srv.Clients.Get(id); ok && c.State.Inflight.Len() >= h.highWater {
			return id
		}
	}
	for _, group := range subs.Shared {
		for id := range group {
			if c, ok := h.srv.Clients.Get(id); ok && c.State.Inflight.Len() >= h.highWater {
				return id
			}
		}
	}
	return ""
}

func (h *guardHook) OnPublishDropped(cl *mqtt.Client, pk packets.Packet) {
	h.dropped.Add(1)
	h.log.Error("broker dropped a message for a slow subscriber", "component", "broker", "client", cl.ID, "topic", pk.TopicName, "qos", pk.FixedHeader.Qos)
}

// OnQosDropped is called when mochi deletes a queued QoS 1/2 message
// without delivery: a clean session ending, or expiry (disabled here).
// mochi also calls it when a persistent session resumes: it copies the
// old client's inflight store to the new client, then clears the old one
// (Server.inheritClientSession, after marking the old client taken over).
// Those messages moved, they were not discarded, and mochi's decrement of
// Info.Inflight would leave the broker-wide count (our fast path in
// OnPublish) short by every message queued at a resume; undo it.
func (h *guardHook) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if cl.IsTakenOver() {
		atomic.AddInt64(&h.srv.Info.Inflight, 1)
		return
	}
	h.discarded.Add(1)
}

func (h *guardHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	h.established.Store(cl, struct{}{})
}

func (h *guardHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.established.Delete(cl)
}

// OnQosPublish is called after mochi has put a message into a client's
// inflight store. It rescues a message mochi (v2.7.9) would lose when a
// persistent session resumes while a publish is being routed:
// publishToSubscribers looks the subscriber's client up, and
// inheritClientSession may then copy that client's inflight store to the
// new connection and clear it, before publishToClient adds the message to
// the old client. The message then sits in a client nobody reads, while
// its publisher already has its PUBACK (mochi acknowledges before it
// routes). The window runs from the copy until the new client is
// registered, which includes clearing the old store one message at a time,
// so it grows with the queue: a publisher streaming during a resume lost
// hundreds of messages in a row (TestSubscriberResumingDuringPublish...).
// mochi marks the old client taken over before copying, so every such
// message arrives here with cl.IsTakenOver(); adopt moves it to the
// session's current client (and holds that publisher until the new client
// is registered, so it adopts at most one message per resume).
func (h *guardHook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	if pk.FixedHeader.Type != packets.Publish || !cl.IsTakenOver() {
		return
	}
	h.adopt(cl, pk)
}

// adopt moves pk from the taken-over client old to the client that now
// holds its session, unless the takeover already copied it.
func (h *guardHook) adopt(old *mqtt.Client, pk packets.Packet) {
	for {
		// mochi adds the new client right after marking the old one.
		cur, ok := h.srv.Clients.Get(old.ID)
		for ok && cur == old && !h.done.Load() {
			time.Sleep(backpressurePoll)
			cur, ok = h.srv.Clients.Get(old.ID)
		}
		if !ok || cur == old || cur.Properties.Clean || (old.Properties.Clean && old.Properties.ProtocolVersion < 5) {
			// The session ended (clean start): MQTT discards its messages.
			if old.State.Inflight.Delete(pk.PacketID) {
				atomic.AddInt64(&h.srv.Info.Inflight, -1)
				h.discarded.Add(1)
			}
			return
		}
		if q, ok := cur.State.Inflight.Get(pk.PacketID); ok && samePublish(q, pk) {
			return // routed before the takeover copied the store
		}
		// Still counted once in Info.Inflight: either it is in old's store,
		// or the takeover cleared it there and OnQosDropped re-added it.
		old.State.Inflight.Delete(pk.PacketID)
		id, err := cur.NextPacketID()
		if err != nil {
			atomic.AddInt64(&h.srv.Info.Inflight, -1)
			h.dropped.Add(1)
			h.log.Error("broker dropped a message: packet ids exhausted", "component", "broker", "client", cur.ID, "topic", pk.TopicName)
			return
		}
		out := pk
		out.PacketID = uint16(id)
		cur.State.Inflight.Set(out)
		h.adopted.Add(1)
		if h.store != nil {
			h.store.moved(old, cur, pk, out)
		}
		if cur.IsTakenOver() { // taken over again meanwhile
			old, pk = cur, out
			continue
		}
		// Write it unless the client is gone (then it stays queued for the
		// next resume). Wait for the CONNACK and the resent messages first.
		for !cur.Closed() && !h.done.Load() {
			if _, ok := h.established.Load(cur); ok {
				_ = cur.WritePacket(out) // a failed write closes cur; the message stays queued
				break
			}
			time.Sleep(backpressurePoll)
		}
		return
	}
}

// samePublish reports whether a and b are the same queued message: copies
// of one packet share its payload (mochi copies it per subscriber).
func samePublish(a, b packets.Packet) bool {
	return a.Created == b.Created && a.TopicName == b.TopicName &&
		len(a.Payload) > 0 && len(a.Payload) == len(b.Payload) && &a.Payload[0] == &b.Payload[0]
}
