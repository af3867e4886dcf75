package daemon

// noteFetch records what a sync's outcome says about the fetch and the
// load. A sync whose fetch failed says nothing about the load: the load
// error of the revision fetched last stays; a sync that reports neither
// (one cut short before its fetch) changes nothing.
func (s *Status) noteFetch(o Outcome) {
	switch {
	case o.FetchError != "":
		s.LastFetchError = o.FetchError
	case !o.FetchedAt.IsZero():
		s.LastFetchError, s.LoadError = "", o.LoadError
	}
}
