package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/schema"
)

func produceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "produce --brokers HOST:PORT --topic T [--subject S] [--file schema.avsc] [--key-fields F,...] < events.jsonl",
		Short: "Turn JSON lines from stdin into Avro records (Confluent wire format) on a topic",
		Long: `Read one JSON object per line from stdin, encode each with the Avro schema of
--subject (its latest version, or the schema in --file, registered first) and
produce it to --topic in the Confluent wire format, as a schema-registry
serializer would. Timestamp fields take milliseconds since the epoch or an
RFC 3339 string.

With --key-fields, each record also gets a key: an Avro record of those
fields of the line (each written as a string; they must be string, integer
or boolean fields of the value schema), whose schema eddy derives and
registers under <topic>-key, as a schema-registry key serializer would.
Records with the same key go to the same partition. Without it records
have no key.

A line that does not fit the schema (not JSON, a missing field, a field of the
wrong type, a field the schema does not have) stops the command: the lines
before it are produced and flushed, the error names the line number and the
field at fault, and the exit status is 1. Nothing after that line is produced,
so nothing is silently lost: fix the line and run again from it (e.g. with
tail -n +LINE).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			topic, _ := cmd.Flags().GetString("topic")
			if topic == "" {
				return errors.New("--topic is empty: name the topic to produce to")
			}
			subject, _ := cmd.Flags().GetString("subject")
			if subject == "" {
				subject = topic + "-value"
			}
			file, _ := cmd.Flags().GetString("file")
			opts, err := brokerOpts(cmd)
			if err != nil {
				return err
			}
			rc, err := openRegistry(cmd, registryURL(cmd))
			if err != nil {
				return err
			}
			defer rc.close()
			reg := rc.client()
			ctx := cmd.Context()
			var enc *schema.Encoder
			if file != "" {
				text, err := readSchemaFile(file)
				if err != nil {
					return err
				}
				if enc, err = schema.NewEncoder(ctx, reg, subject, text); err != nil {
					return err
				}
			} else {
				s, err := reg.Latest(ctx, subject)
				if err != nil {
					return fmt.Errorf("%w (register the schema with --file, or eddy schema register)", err)
				}
				if enc, err = schema.NewEncoderFor(s); err != nil {
					return err
				}
			}
			var keys *keyEncoder
			if kf, _ := cmd.Flags().GetStringSlice("key-fields"); len(kf) > 0 {
				if keys, err = newKeyEncoder(ctx, reg, topic, kf, enc); err != nil {
					return err
				}
			}
			cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(splitBrokers(flagString(cmd, "brokers"))...),
				kgo.AllowAutoTopicCreation()}, opts...)...)
			if err != nil {
				return err
			}
			defer cl.Close()
			n, err := produceLines(ctx, cl, topic, enc, keys, cmd.InOrStdin())
			keyNote := ""
			if keys != nil {
				keyNote = fmt.Sprintf("; keys: subject %s, schema id %d", keys.enc.Schema().Subject, keys.enc.ID())
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "eddy produce: %d records to %s (subject %s, schema id %d%s)\n", n, topic, subject, enc.ID(), keyNote)
			return err
		},
	}
	cmd.Flags().String("topic", "", "Topic to produce to")
	cmd.Flags().String("subject", "", "Subject of the schema (default <topic>-value)")
	cmd.Flags().StringP("file", "f", "", "Avro schema file to register under the subject first (default: use the subject's latest version)")
	cmd.Flags().StringSlice("key-fields", nil, "Fields of each line that make the record key, an Avro record registered under <topic>-key (default: no key)")
	cmd.SetGlobalNormalizationFunc(normalizeFlag)
	addSettingDefault(cmd.Flags(), "registry-url", defaultRegistryURL)
	addSettings(cmd, registryAuthSettings...)
	addSettings(cmd, brokerSettings...)
	return cmd
}

// keyEncoder writes record keys: a record of some fields of each line,
// all strings (schema.DeriveOutputKey), registered under <topic>-key.
type keyEncoder struct {
	fields []string
	enc    *schema.Encoder
}

func newKeyEncoder(ctx context.Context, reg schema.Registry, topic string, fields []string, value *schema.Encoder) (*keyEncoder, error) {
	types := schema.Fields(value.Schema())
	for _, f := range fields {
		ft, ok := types[f]
		if !ok {
			return nil, fmt.Errorf("--key-fields: %q is not a field of the value schema", f)
		}
		if ft.Kind != schema.KindString && ft.Kind != schema.KindInt && ft.Kind != schema.KindBool {
			return nil, fmt.Errorf("--key-fields: field %q is Avro %s; key fields must be strings, integers or booleans", f, ft.Avro)
		}
	}
	text, err := schema.DeriveOutputKey(schema.Output{Name: schema.AvroName(topic) + "_key", Namespace: "eddy.produce",
		Doc: fmt.Sprintf("Keys of topic %q: fields %s", topic, strings.Join(fields, ", ")), KeyFields: fields})
	if err != nil {
		return nil, fmt.Errorf("--key-fields: %w", err)
	}
	enc, err := schema.NewEncoder(ctx, reg, topic+"-key", text)
	if err != nil {
		return nil, fmt.Errorf("register the key schema under %s-key: %w", topic, err)
	}
	return &keyEncoder{fields: fields, enc: enc}, nil
}

// encode returns the key of a line whose fields were converted by
// encodeLine.
func (k *keyEncoder) encode(m map[string]any) ([]byte, error) {
	key := make(map[string]any, len(k.fields))
	for _, f := range k.fields {
		switch v := m[f].(type) {
		case string:
			key[f] = v
		case int64:
			key[f] = strconv.FormatInt(v, 10)
		case bool:
			key[f] = strconv.FormatBool(v)
		case nil:
			return nil, fmt.Errorf("key field %q is missing or null", f)
		default:
			return nil, fmt.Errorf("key field %q: %v cannot be a key", f, v)
		}
	}
	return k.enc.Encode(key)
}

// produceLines encodes and produces every line of in, in order (with a
// key when keys is not nil). On a bad line it flushes what was produced
// before it and returns an error naming the line and field. It returns how
// many records were acknowledged.
func produceLines(ctx context.Context, cl *kgo.Client, topic string, enc *schema.Encoder, keys *keyEncoder, in io.Reader) (int, error) {
	fields := schema.Fields(enc.Schema())
	var (
		mu      sync.Mutex
		acked   int
		prodErr error
	)
	r := bufio.NewReaderSize(in, 1<<20)
	var lineErr error
	for line := 1; ; line++ {
		b, err := r.ReadBytes('\n')
		if len(strings.TrimSpace(string(b))) > 0 {
			m, value, perr := encodeLine(enc, fields, b)
			var key []byte
			if perr == nil && keys != nil {
				key, perr = keys.encode(m)
			}
			if perr != nil {
				lineErr = fmt.Errorf("line %d: %w; the %d lines before it were produced, nothing after it", line, perr, line-1)
				break
			}
			cl.Produce(ctx, &kgo.Record{Topic: topic, Key: key, Value: value}, func(_ *kgo.Record, err error) {
				mu.Lock()
				defer mu.Unlock()
				if err != nil && prodErr == nil {
					prodErr = err
				}
				if err == nil {
					acked++
				}
			})
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			lineErr = fmt.Errorf("read stdin after line %d: %w", line-1, err)
			break
		}
	}
	ferr := cl.Flush(ctx)
	mu.Lock()
	defer mu.Unlock()
	if prodErr != nil {
		return acked, fmt.Errorf("produce to %s: %w", topic, prodErr)
	}
	if ferr != nil {
		return acked, ferr
	}
	return acked, lineErr
}

// encodeLine converts one JSON object to the schema's field types and
// encodes it; it returns the converted fields too. Errors name the field
// at fault.
func encodeLine(enc *schema.Encoder, fields map[string]schema.FieldType, line []byte) (map[string]any, []byte, error) {
	d := json.NewDecoder(strings.NewReader(string(line)))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil || m == nil {
		if err == nil {
			err = errors.New("null")
		}
		return nil, nil, fmt.Errorf("not a JSON object: %v", err)
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		ft, ok := fields[k]
		if !ok {
			return nil, nil, fmt.Errorf("field %q is not in the schema", k)
		}
		v, err := convertField(ft, m[k])
		if err != nil {
			return nil, nil, fmt.Errorf("field %q (%s): %w", k, ft.Avro, err)
		}
		m[k] = v
	}
	b, err := enc.Encode(m)
	if err != nil {
		return nil, nil, err // ErrAvroEncode errors name the field
	}
	return m, b, nil
}

func convertField(ft schema.FieldType, v any) (any, error) {
	if v == nil {
		if ft.Nullable {
			return nil, nil
		}
		return nil, errors.New("is null, and the field is not nullable")
	}
	switch ft.Kind {
	case schema.KindString:
		if s, ok := v.(string); ok {
			return s, nil
		}
		return nil, fmt.Errorf("%v is not a string", v)
	case schema.KindBool:
		if b, ok := v.(bool); ok {
			return b, nil
		}
		return nil, fmt.Errorf("%v is not true or false", v)
	case schema.KindInt:
		if n, ok := v.(json.Number); ok {
			if i, err := n.Int64(); err == nil {
				return i, nil
			}
		}
		return nil, fmt.Errorf("%v is not an integer", jsonText(v))
	case schema.KindFloat:
		if n, ok := v.(json.Number); ok {
			if f, err := n.Float64(); err == nil {
				return f, nil
			}
		}
		return nil, fmt.Errorf("%v is not a number", jsonText(v))
	case schema.KindTime:
		switch x := v.(type) {
		case json.Number:
			if ms, err := x.Int64(); err == nil {
				return time.UnixMilli(ms).UTC(), nil
			}
		case string:
			if t, err := time.Parse(time.RFC3339Nano, x); err == nil {
				return t, nil
			}
		}
		return nil, fmt.Errorf("%v is neither milliseconds since the epoch nor an RFC 3339 time", jsonText(v))
	}
	return v, nil
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
