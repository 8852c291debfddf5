// Package groupkey is the one codec of grouping keys. A grouping key is
// a JSON array of the key fields' values as strings, e.g.
// ["checkout","/pay"]: the key of repartition, output and alert records,
// and of the windows in the store. Build writes it; Parts and SplitJSON
// read it. Nothing else builds or parses one.
package groupkey

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// Build builds the grouping key: a JSON array of the key fields' values
// as strings, e.g. ["checkout","/pay"]. It is the key of repartition and
// output records.
func Build(fields map[string]any, keyFields []string) (string, string, error) {
	var buf [128]byte
	b := append(buf[:0], '[')
	for i, f := range keyFields {
		s, ok := FieldText(fields[f])
		if !ok {
			return "", f, fmt.Errorf("missing or null")
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, s)
	}
	b = append(b, ']')
	return string(b), "", nil
}

// Parts returns the values of a grouping key, in key field order; ok is
// false when key is not a JSON array of strings.
func Parts(key string) (parts []string, ok bool) {
	if err := json.Unmarshal([]byte(key), &parts); err != nil {
		return nil, false
	}
	return parts, true
}

// SplitJSON returns the elements of a grouping key (a JSON array of
// strings as Build writes it) as their JSON text, quotes included: parts
// of key, nothing copied.
func SplitJSON(key string, dst []string) ([]string, bool) {
	dst = dst[:0]
	if len(key) < 2 || key[0] != '[' || key[len(key)-1] != ']' {
		return dst, false
	}
	s := key[1 : len(key)-1]
	for len(s) > 0 {
		if s[0] != '"' {
			return dst, false
		}
		i := 1
		for ; i < len(s); i++ {
			if s[i] == '\\' {
				i++
				continue
			}
			if s[i] == '"' {
				break
			}
		}
		if i >= len(s) {
			return dst, false
		}
		dst = append(dst, s[:i+1])
		s = s[i+1:]
		if len(s) > 0 {
			if s[0] != ',' || len(s) == 1 {
				return dst, false
			}
			s = s[1:]
		}
	}
	return dst, true
}

// FieldText renders one key (or distinct) field value as text; ok is
// false for nil (a missing or null field).
func FieldText(v any) (string, bool) {
	switch t := v.(type) {
	case nil:
		return "", false
	case string:
		return t, true
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64), true
	case int64:
		return strconv.FormatInt(t, 10), true
	case int:
		return strconv.Itoa(t), true
	case bool:
		return strconv.FormatBool(t), true
	case time.Time:
		return t.UTC().Format(time.RFC3339Nano), true
	}
	return fmt.Sprint(v), true
}

// AppendJSONString appends s as encoding/json writes a string. Strings
// made only of printable ASCII that needs no escaping (encoding/json also
// escapes <, > and &) are quoted directly; others go through
// encoding/json.
func AppendJSONString(b []byte, s string) []byte {
	if plainJSON(s) {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	q, _ := json.Marshal(s)
	return append(b, q...)
}

func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}
