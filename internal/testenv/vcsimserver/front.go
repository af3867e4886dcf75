package vcsimserver

import (
	"bytes"
	"encoding/xml"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// front is the HTTP handler clients reach: it names the SOAP method of each
// request, counts it, answers with an injected HTTP status when told to,
// applies method delays, and runs VM task methods through the serializer
// before handing the request to the simulator.
type front struct {
	next      http.Handler
	delay     map[string]int // milliseconds per SOAP method
	httpFault func(method string) int
	serial    *serializer
	// inventory orders the simulator's handlers when tasks are serialized:
	// a method that changes the inventory runs alone, the others share it.
	// The simulator itself reads a folder's children (FindChild) without the
	// lock CreateFolder writes them under, which -race reports.
	inventory sync.RWMutex

	total    atomic.Int64
	mu       sync.Mutex
	counts   map[string]int64
	inflight map[string]int64
	peak     map[string]int64
}

// enter and leave keep the calls of each method in flight, and the peak.
func (f *front) enter(method string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counts[method]++
	f.inflight[method]++
	f.peak[method] = max(f.peak[method], f.inflight[method])
}

func (f *front) leave(method string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inflight[method]--
}

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		f.next.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	_ = r.Body.Close()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	method := soapMethod(body)
	f.total.Add(1)
	f.enter(method)
	defer f.leave(method)

	if f.httpFault != nil {
		if code := f.httpFault(method); code != 0 {
			http.Error(w, http.StatusText(code), code)
			return
		}
	}
	if ms := f.delay[method]; ms > 0 {
		// Like vCenter, carry on when the client gives up meanwhile.
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	switch {
	case f.serial == nil || longPollMethods[method]:
		// A long poll waits for tasks to finish: it must not hold up the
		// methods that would finish them.
		f.next.ServeHTTP(w, r)
	case serialMethods[method] || inventoryMethods[method]:
		f.inventory.Lock()
		defer f.inventory.Unlock()
		f.serial.do(func() { f.next.ServeHTTP(w, r) })
	default:
		f.inventory.RLock()
		defer f.inventory.RUnlock()
		f.next.ServeHTTP(w, r)
	}
}

// inventoryMethods change the inventory without a task.
var inventoryMethods = map[string]bool{
	"CreateFolder": true, "MoveIntoFolder_Task": true, "Rename_Task": true, "MarkAsTemplate": true,
}

// longPollMethods wait for changes (task.Wait uses them).
var longPollMethods = map[string]bool{
	"WaitForUpdatesEx": true, "WaitForUpdates": true, "CheckForUpdates": true,
}

// soapMethod returns the name of the first element in the SOAP body.
func soapMethod(body []byte) string {
	d := xml.NewDecoder(bytes.NewReader(body))
	inBody := false
	for {
		tok, err := d.Token()
		if err != nil {
			return ""
		}
		if se, ok := tok.(xml.StartElement); ok {
			if inBody {
				return se.Name.Local
			}
			inBody = se.Name.Local == "Body"
		}
	}
}

func (f *front) snapshot() map[string]int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]int64, len(f.counts))
	for k, v := range f.counts {
		out[k] = v
	}
	return out
}

func (f *front) peakOf(method string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.peak[method]
}
