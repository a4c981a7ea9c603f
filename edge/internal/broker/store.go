package broker

import (
	"strconv"
	"strings"

	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/hooks/storage/bolt"
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
