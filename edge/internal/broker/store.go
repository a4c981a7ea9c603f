package broker

import (
	"strconv"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/hooks/storage/bolt"
	"github.com/mochi-mqtt/server/v2/packets"
)

// sessionStore is mochi's bbolt storage hook with one fix: mochi v2.7.9
// stores an inflight message without its packet id, so on restart every
// queued message of a session loads with id 0 and all but one are lost
// (mochi keys the inflight store by packet id). The id is the last part
// of the storage key ("IFM_<client>:<packet id>"), so we restore it from
// there.
type sessionStore struct {
	bolt.Hook
}

// StoredInflightMessages returns the stored inflight messages with their
// packet ids.
func (h *sessionStore) StoredInflightMessages() ([]storage.Message, error) {
	msgs, err := h.Hook.StoredInflightMessages()
	if err != nil {
		return nil, err
	}
	for i := range msgs {
		if msgs[i].PacketID != 0 {
			continue
		}
		k := strings.LastIndexByte(msgs[i].ID, ':')
		if k < 0 {
			continue
		}
		if id, err := strconv.ParseUint(msgs[i].ID[k+1:], 10, 16); err == nil {
			msgs[i].PacketID = uint16(id)
		}
	}
	return msgs, nil
}

// OnQosDropped deletes a dropped message's record, except when mochi
// clears a taken-over client after moving its inflight messages to the
// resumed session (see guardHook.OnQosDropped): the records, keyed by
// client id and packet id, now belong to the new client. Without this a
// broker restart after any resume lost every message queued at the time.
func (h *sessionStore) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if cl.IsTakenOver() {
		return
	}
	h.Hook.OnQosDropped(cl, pk)
}

// moved updates the records when guardHook.adopt moves a message from a
// taken-over client to the current one under a new packet id: the store
// recorded it under its old id, which in the current session may belong
// to another message.
func (h *sessionStore) moved(old, cur *mqtt.Client, from, to packets.Packet) {
	h.Hook.OnQosPublish(cur, to, to.Created, 0)
	if q, ok := cur.State.Inflight.Get(from.PacketID); ok {
		h.Hook.OnQosPublish(cur, q, q.Created, 0)
		return
	}
	h.Hook.OnQosComplete(old, from)
}
