package processor

import (
	"encoding/binary"
	"fmt"
	"testing"
)

// murmur2 is Kafka's Utils.murmur2, written here from Kafka's Java source
// as an independent computation of what its default partitioner does
// (toPositive(murmur2(key)) % n); eddy itself uses franz-go's.
func murmur2(b []byte) int32 {
	const seed, m, r = uint32(0x9747b28c), uint32(0x5bd1e995), 24
	h := seed ^ uint32(len(b))
	for len(b) >= 4 {
		k := binary.LittleEndian.Uint32(b)
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
		b = b[4:]
	}
	switch len(b) {
	case 3:
		h ^= uint32(b[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(b[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(b[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// TestKeyPartition: the partition the console routes a key's query to is
// the one Kafka's default partitioner (murmur2) gives the key's bytes, the
// partitioner the repartition topic is written with.
func TestKeyPartition(t *testing.T) {
	// Kafka's own test vectors (UtilsTest.testMurmur2) check the model.
	for k, want := range map[string]int32{"21": -973932308, "foobar": -790332482, "a-little-bit-long-string": -985981536,
		"a-little-bit-longer-string": -1486304829, "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971, "abc": 479470107} {
		if got := murmur2([]byte(k)); got != want {
			t.Fatalf("model murmur2(%q) = %d, want %d", k, got, want)
		}
	}
	for _, n := range []int{1, 2, 3, 4, 7, 12} {
		for i := range 500 {
			key := fmt.Sprintf(`["svc-%d","/path/%d"]`, i%17, i)
			want := int32(murmur2([]byte(key))&0x7fffffff) % int32(n)
			if got := KeyPartition("app-repartition", key, n); got != want {
				t.Fatalf("KeyPartition(%s, %d) = %d, Kafka's partitioner gives %d", key, n, got, want)
			}
		}
	}
}

func TestAdvertised(t *testing.T) {
	for _, c := range []struct{ id, url string }{
		{"eddy-clicks-pod-1" + AdvertiseSuffix("http://10.0.0.7:8080"), "http://10.0.0.7:8080"},
		{"eddy-clicks-pod-1" + AdvertiseSuffix("https://[::1]:8443"), "https://[::1]:8443"},
		{"eddy-clicks-pod-1" + AdvertiseSuffix(""), ""},
		{"eddy-clicks-user@host", ""},
	} {
		if got := ParseAdvertised(c.id); got != c.url {
			t.Errorf("ParseAdvertised(%q) = %q, want %q", c.id, got, c.url)
		}
	}
}
