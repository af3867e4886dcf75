package git

import "testing"

func TestMergeFromKeepsLargePacks(t *testing.T) {
	p := func(sizes ...int64) []packFile {
		var out []packFile
		for _, s := range sizes {
			out = append(out, packFile{size: s})
		}
		return out
	}
	for _, c := range []struct {
		packs []packFile
		want  int
	}{
		{p(1000, 400, 10, 5, 3, 2, 1), 2}, // 1000 and 400 each outweigh the rest
		{p(200, 60, 50, 1), 2},            // every pack outweighs the rest: merge the two smallest
		{p(10, 9, 1), 0},                  // the largest is not larger than the rest: merge all
		{p(64, 32, 16, 8, 4, 2, 1), 5},    // all geometric: merge the smallest to fit the limit
		{p(5, 4), 0},                      // two packs: merge them
	} {
		if got := mergeFrom(c.packs, 6); got != c.want {
			t.Errorf("mergeFrom(%v) = %d, want %d", c.packs, got, c.want)
		}
	}
}
