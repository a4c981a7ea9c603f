//go:build bench

package bench

import (
	"fmt"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/smartmaint/smartmaint/shared/testenv"
)

// edgeFootprint: sm-edge at the plant in steady state. 20,000
// sensors publish one reading a second each (one message per reading)
// for v.steadyFor while the collector is up, so the edge maps, scores,
// commits and forwards everything and its queue stays near empty: the
// memory a site of that size needs day to day. The row gives the peak
// (VmHWM) over the whole run and the resident memory at its end, split
// into anonymous memory (heap, stacks) and file-backed pages (the binary,
// the queue file's memory map), and the largest queue seen, so a run where
// the edge fell behind shows.
func edgeFootprint(t *testing.T, bins binaries, v volumes, rep *report) {
	broker, coll, e := startStack(t, bins)
	defer func() {
		e.p.Stop()
		coll.p.Stop()
	}()
	secs := int(v.steadyFor / time.Second)
	l := singleLoad("f", v.edgeSensors*secs, v.edgeSensors)
	t0 := time.Now()
	var pwg sync.WaitGroup
	pwg.Go(func() { publishEverySecond(t, broker.URL, l, v.edgeSensors, secs) })
	wait := pwg.Wait
	done := make(chan struct{})
	var wg sync.WaitGroup
	var maxQueue float64
	wg.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				maxQueue = max(maxQueue, e.queueRecords())
			}
		}
	})
	wait()
	published := time.Since(t0)
	testenv.WaitFor(t, 2*time.Minute, "the readings to be forwarded", func() bool { return e.forwarded() >= float64(l.msgs) })
	close(done)
	wg.Wait()
	m := memoryOf(e.p)
	t.Logf("steady state: %d readings published in %s (%.0f/s), largest queue %.0f records; %s", l.msgs, published.Round(time.Millisecond),
		float64(l.msgs)/published.Seconds(), maxQueue, m)
	rep.add(row{stage: "footprint", what: fmt.Sprintf("sm-edge memory, steady state: %d sensors at 1 Hz for %s (one reading per message), collector up, largest queue %.0f records", v.edgeSensors, v.steadyFor, maxQueue),
		figure: m.String(), goal: "≤ 64 MiB RSS"})
}

// publishEverySecond publishes l as one reading per sensor every second
// for secs seconds: at each second the publishers clients start their
// share of the sensors, pipelined (window QoS 1 publishes in flight each),
// so the load is the plant's, not a paced trickle that falls behind when
// each small window waits for its acknowledgements.
func publishEverySecond(t *testing.T, url string, l *load, sensors, secs int) {
	start := time.Now()
	var wg sync.WaitGroup
	for c := range publishers {
		wg.Go(func() {
			cl := connectMQTT(t, url, fmt.Sprintf("bench-fp-%d-%d", c, time.Now().UnixNano()), true, nil)
			defer cl.Disconnect(100)
			inflight := make(chan mqtt.Token, window)
			acked := make(chan struct{})
			go func() {
				defer close(acked)
				for tok := range inflight {
					if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
						t.Errorf("publish: %v", tok.Error())
					}
				}
			}()
			for s := range secs {
				time.Sleep(time.Until(start.Add(time.Duration(s) * time.Second)))
				us := time.Now().UnixMicro()
				for i := c; i < sensors; i += publishers {
					n := s*sensors + i
					inflight <- cl.Publish(l.topic(n), 1, false, l.payload(n, us))
					l.publishedAt.Add(1)
				}
			}
			close(inflight)
			<-acked
		})
	}
	wg.Wait()
}
