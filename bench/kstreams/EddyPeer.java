// EddyPeer: the Kafka Streams side of eddy's benchmarks (BENCHMARKS.md).
// Each mode is the same logic as one eddy pipeline that bench/cmd/harness
// writes, on the same topics and data: records are Avro in the Confluent wire
// format with one fixed schema (bench/cmd/harness/data.go), every record is
// fully decoded by the hand-written decoder below, windows are tumbling with
// an explicit grace, state is in RocksDB (the default store).
//
//   java -cp 'build:libs/*' EddyPeer MODE key=value...
//
// Modes:
//   consume  the plain Java consumer reads the topic to its end offsets
//            (no group, no decoding): the consume-only ceiling
//   count    per-key tumbling count, final results on window close
//   filter   decode, filter (region != "ap-south-1"), re-key by the "key"
//            field through a repartition topic, then as count
//   latency  per-key tumbling count and max(ts), emitted on update (at each
//            commit, through the cache), for end-to-end latency
//   p99      as count, plus the p99 of latency_ms from DataDog's DDSketch
//            (sketches-java), with eddy's sketch settings: 1% relative
//            accuracy, cubically interpolated mapping, collapsing dense
//            stores of 2048 bins; the sketch is serialized into the window
//            store and its changelog with the library's own encoding
//
// Keys: bootstrap, input, output, app, state, guarantee (at_least_once |
// exactly_once_v2), commit_ms, cache_bytes, window_ms, grace_ms,
// session_ms, restore_parts. It prints "KSTATE RUNNING <epoch ms>" when Kafka Streams
// reaches RUNNING, "KRESTORED <epoch ms> <records>" once restore_parts
// store partitions are restored, and stops cleanly on SIGTERM.

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.EmitStrategy;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.TimeWindowedKStream;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.kstream.Windowed;
import org.apache.kafka.streams.processor.StateRestoreListener;
import org.apache.kafka.streams.state.WindowStore;

import com.datadoghq.sketch.ddsketch.DDSketch;
import com.datadoghq.sketch.ddsketch.encoding.ByteArrayInput;
import com.datadoghq.sketch.ddsketch.encoding.GrowingByteArrayOutput;
import com.datadoghq.sketch.ddsketch.mapping.CubicallyInterpolatedMapping;
import com.datadoghq.sketch.ddsketch.mapping.IndexMapping;
import com.datadoghq.sketch.ddsketch.store.CollapsingHighestDenseStore;
import com.datadoghq.sketch.ddsketch.store.CollapsingLowestDenseStore;

public final class EddyPeer {

  // ------------------------------------------------------------ Avro

  /** One input record, decoded. Field order is the schema's. */
  static final class Event {
    long ts;
    String key, service, endpoint;
    int status;
    double latencyMs;
    String region, userAgent;
    List<String> tags;
    String requestId;
  }

  /** Decodes the fixed schema from Confluent wire bytes (magic 0, 4-byte id, body). */
  static final class Decoder {
    private byte[] b;
    private int p;

    Event decode(byte[] value) {
      if (value == null || value.length < 5 || value[0] != 0) {
        throw new IllegalArgumentException("not Confluent wire format");
      }
      b = value;
      p = 5;
      Event e = new Event();
      e.ts = readLong();
      e.key = readString();
      e.service = readString();
      e.endpoint = readString();
      e.status = (int) readLong();
      e.latencyMs = readDouble();
      e.region = readString();
      e.userAgent = readString();
      List<String> tags = new ArrayList<>(3);
      for (long n = readLong(); n != 0; n = readLong()) {
        if (n < 0) { n = -n; readLong(); } // block with byte size
        for (long i = 0; i < n; i++) tags.add(readString());
      }
      e.tags = tags;
      e.requestId = readString();
      return e;
    }

    private long readLong() {
      long v = 0;
      int shift = 0;
      while (true) {
        int x = b[p++] & 0xff;
        v |= (long) (x & 0x7f) << shift;
        if ((x & 0x80) == 0) break;
        shift += 7;
      }
      return (v >>> 1) ^ -(v & 1);
    }

    private double readDouble() {
      long bits = 0;
      for (int i = 0; i < 8; i++) bits |= (long) (b[p + i] & 0xff) << (8 * i);
      p += 8;
      return Double.longBitsToDouble(bits);
    }

    private String readString() {
      int n = (int) readLong();
      String s = new String(b, p, n, StandardCharsets.UTF_8);
      p += n;
      return s;
    }
  }

  // One decoder per stream thread (num.stream.threads=1, but be safe).
  static final ThreadLocal<Decoder> DEC = ThreadLocal.withInitial(Decoder::new);

  static Event decode(byte[] v) { return DEC.get().decode(v); }

  // ------------------------------------------------------------ aggregates

  /** count and max(ts) of a window, for the latency mode. */
  static final class CountMax {
    long count, maxTs;
  }

  static final class CountMaxSerde implements Serde<CountMax> {
    public Serializer<CountMax> serializer() {
      return (topic, v) -> ByteBuffer.allocate(16).putLong(v.count).putLong(v.maxTs).array();
    }
    public Deserializer<CountMax> deserializer() {
      return (topic, b) -> {
        if (b == null) return null;
        ByteBuffer bb = ByteBuffer.wrap(b);
        CountMax c = new CountMax();
        c.count = bb.getLong();
        c.maxTs = bb.getLong();
        return c;
      };
    }
  }

  /**
   * count and p99 of latency_ms of a window, for the p99 mode: the state of
   * eddy's row of a count and a p99 aggregate (state/aggregate.go): the
   * record count, the exact min and max of the values, and a DDSketch with
   * eddy's settings (RelativeAccuracy, MaxQuantileBins, the cubically
   * interpolated mapping; positive values collapse their lowest bins,
   * negative ones, stored by magnitude, their highest). As in eddy, the
   * quantile is the sketch's estimate clamped to the exact min and max, and
   * NaN and infinite values are counted but not fed to the sketch.
   */
  static final class CountP99 {
    static final double RELATIVE_ACCURACY = 0.01, QUANTILE = 0.99;
    static final int MAX_BINS = 2048;
    static final IndexMapping MAPPING = new CubicallyInterpolatedMapping(RELATIVE_ACCURACY);

    long count, values;
    double min, max;
    DDSketch sketch; // null until the first value, as in eddy

    static DDSketch newSketch() {
      return new DDSketch(MAPPING,
          () -> new CollapsingHighestDenseStore(MAX_BINS), // negative values
          () -> new CollapsingLowestDenseStore(MAX_BINS)); // positive values
    }

    void add(double v) {
      count++;
      if (!Double.isFinite(v)) return;
      if (v == 0) v = 0; // -0 -> +0
      if (sketch == null) sketch = newSketch();
      sketch.accept(v);
      if (values == 0) {
        min = v;
        max = v;
      } else {
        min = Math.min(min, v);
        max = Math.max(max, v);
      }
      values++;
    }

    /** The JSON value of the p99: null when the window saw no value, as eddy writes it. */
    String p99() {
      if (values == 0) return "null";
      return Double.toString(Math.min(Math.max(sketch.getValueAtQuantile(QUANTILE), min), max));
    }
  }

  /**
   * CountP99 as count, values (8-byte longs), min, max (8-byte doubles),
   * then the sketch in the library's encoding without the index mapping
   * (fixed above), as eddy encodes its rows: zero count, positive and
   * negative bins. Empty when no value was seen yet.
   */
  static final class CountP99Serde implements Serde<CountP99> {
    public Serializer<CountP99> serializer() {
      return (topic, a) -> {
        GrowingByteArrayOutput out = GrowingByteArrayOutput.withInitialCapacity(64);
        try {
          out.writeLongLE(a.count);
          out.writeLongLE(a.values);
          out.writeLongLE(Double.doubleToRawLongBits(a.min));
          out.writeLongLE(Double.doubleToRawLongBits(a.max));
          if (a.sketch != null) a.sketch.encode(out, true);
        } catch (java.io.IOException e) {
          throw new java.io.UncheckedIOException(e);
        }
        return out.trimmedCopy();
      };
    }
    public Deserializer<CountP99> deserializer() {
      return (topic, b) -> {
        if (b == null) return null;
        ByteArrayInput in = ByteArrayInput.wrap(b);
        CountP99 a = new CountP99();
        try {
          a.count = in.readLongLE();
          a.values = in.readLongLE();
          a.min = Double.longBitsToDouble(in.readLongLE());
          a.max = Double.longBitsToDouble(in.readLongLE());
          if (in.hasRemaining()) {
            a.sketch = CountP99.newSketch();
            a.sketch.decodeAndMergeWith(in); // reads to the end of b
          }
        } catch (java.io.IOException e) {
          throw new java.io.UncheckedIOException(e);
        }
        return a;
      };
    }
  }

  static String iso(long ms) { return java.time.Instant.ofEpochMilli(ms).toString(); }

  /** The result record, shaped like eddy's JSON results. */
  static String result(Windowed<String> w, String name, long count, String extra) {
    StringBuilder sb = new StringBuilder(160);
    sb.append("{\"key\":").append(w.key())
        .append(",\"window_start\":\"").append(iso(w.window().start()))
        .append("\",\"window_end\":\"").append(iso(w.window().end()))
        .append("\",\"").append(name).append("\":").append(count);
    if (extra != null) sb.append(',').append(extra);
    return sb.append('}').toString();
  }

  // ------------------------------------------------------------ main

  public static void main(String[] args) throws Exception {
    if (args.length < 1) {
      System.err.println("usage: EddyPeer consume|count|filter|latency|p99 key=value...");
      System.exit(2);
    }
    Map<String, String> o = new HashMap<>();
    for (int i = 1; i < args.length; i++) {
      int eq = args[i].indexOf('=');
      if (eq < 0) throw new IllegalArgumentException("want key=value, got " + args[i]);
      o.put(args[i].substring(0, eq), args[i].substring(eq + 1));
    }
    String mode = args[0];
    if (mode.equals("consume")) {
      consume(o);
      return;
    }
    runStreams(mode, o);
  }

  static String need(Map<String, String> o, String k) {
    String v = o.get(k);
    if (v == null) throw new IllegalArgumentException("missing " + k + "=...");
    return v;
  }

  static void consume(Map<String, String> o) {
    Properties p = new Properties();
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, need(o, "bootstrap"));
    p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class);
    p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class);
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
    String topic = need(o, "input");
    try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p)) {
      List<TopicPartition> tps = new ArrayList<>();
      for (PartitionInfo pi : c.partitionsFor(topic)) tps.add(new TopicPartition(topic, pi.partition()));
      c.assign(tps);
      c.seekToBeginning(tps);
      Map<TopicPartition, Long> end = c.endOffsets(tps);
      long n = 0, bytes = 0, t0 = System.nanoTime(); // before the first fetch, as the franz-go side
      while (true) {
        ConsumerRecords<byte[], byte[]> rs = c.poll(Duration.ofMillis(500));
        for (ConsumerRecord<byte[], byte[]> r : rs) {
          n++;
          bytes += r.serializedValueSize() + Math.max(0, r.serializedKeySize());
        }
        boolean done = true;
        for (TopicPartition tp : tps) if (c.position(tp) < end.get(tp)) { done = false; break; }
        if (done) break;
      }
      double secs = (System.nanoTime() - t0) / 1e9;
      System.out.printf("CONSUMED records=%d bytes=%d seconds=%.6f%n", n, bytes, secs);
    }
  }

  static void runStreams(String mode, Map<String, String> o) throws Exception {
    String input = need(o, "input"), output = need(o, "output");
    long windowMs = Long.parseLong(o.getOrDefault("window_ms", "10000"));
    long graceMs = Long.parseLong(o.getOrDefault("grace_ms", "5000"));
    String filterRegion = o.getOrDefault("filter_region", "ap-south-1");

    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, need(o, "app"));
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, need(o, "bootstrap"));
    p.put(StreamsConfig.STATE_DIR_CONFIG, need(o, "state"));
    p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
    p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, o.getOrDefault("guarantee", "at_least_once"));
    p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, Long.parseLong(o.getOrDefault("commit_ms", "1000")));
    p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, Long.parseLong(o.getOrDefault("cache_bytes", "104857600")));
    p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
    p.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), Integer.parseInt(o.getOrDefault("session_ms", "6000")));
    p.put(StreamsConfig.consumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG), 1000);
    // eddy's producer lingers 5 ms; Kafka Streams would default to 100 ms.
    p.put(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG), 5);
    p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);

    StreamsBuilder b = new StreamsBuilder();
    KStream<String, byte[]> in = b.stream(input, Consumed.with(Serdes.String(), Serdes.ByteArray()));
    Grouped<String, byte[]> grouped = Grouped.with(Serdes.String(), Serdes.ByteArray());
    TimeWindows windows = TimeWindows.ofSizeAndGrace(Duration.ofMillis(windowMs), Duration.ofMillis(graceMs));
    switch (mode) {
      case "count":
      case "filter": {
        TimeWindowedKStream<String, byte[]> w;
        if (mode.equals("filter")) {
          w = in.flatMap((k, v) -> {
                Event e = decode(v);
                if (e.region.equals(filterRegion)) return Collections.<KeyValue<String, byte[]>>emptyList();
                return Collections.singletonList(KeyValue.pair("[\"" + e.key + "\"]", v));
              })
              .groupByKey(Grouped.with("rekey", Serdes.String(), Serdes.ByteArray()))
              .windowedBy(windows);
        } else {
          w = in.groupByKey(grouped).windowedBy(windows);
        }
        w.emitStrategy(EmitStrategy.onWindowClose())
            .aggregate(() -> 0L, (k, v, agg) -> {
                  Event e = decode(v);
                  return e.ts >= 0 ? agg + 1 : agg;
                },
                Materialized.<String, Long, WindowStore<Bytes, byte[]>>as("windows")
                    .withKeySerde(Serdes.String()).withValueSerde(Serdes.Long())
                    // A precaution: keep windows a minute past size + grace, so that segment
                    // expiry cannot drop a window before the close check (once a second of
                    // wall-clock time, emit.interval.ms.kstreams.windowed.aggregation) has
                    // emitted it while a replay moves stream time fast.
                    .withRetention(Duration.ofMillis(windowMs + graceMs + 60_000)))
            .toStream()
            .map((wk, n) -> KeyValue.pair(wk.key(), result(wk, "requests", n, null)))
            .to(output, Produced.with(Serdes.String(), Serdes.String()));
        break;
      }
      case "latency": {
        in.groupByKey(grouped).windowedBy(windows)
            .aggregate(CountMax::new, (k, v, agg) -> {
                  Event e = decode(v);
                  agg.count++;
                  agg.maxTs = Math.max(agg.maxTs, e.ts);
                  return agg;
                },
                Materialized.<String, CountMax, WindowStore<Bytes, byte[]>>as("windows")
                    .withKeySerde(Serdes.String()).withValueSerde(new CountMaxSerde()))
            .toStream()
            .map((wk, a) -> KeyValue.pair(wk.key(), result(wk, "requests", a.count, "\"last_ts\":" + a.maxTs)))
            .to(output, Produced.with(Serdes.String(), Serdes.String()));
        break;
      }
      case "p99": {
        in.groupByKey(grouped).windowedBy(windows)
            .emitStrategy(EmitStrategy.onWindowClose())
            .aggregate(CountP99::new, (k, v, agg) -> {
                  agg.add(decode(v).latencyMs);
                  return agg;
                },
                Materialized.<String, CountP99, WindowStore<Bytes, byte[]>>as("windows")
                    .withKeySerde(Serdes.String()).withValueSerde(new CountP99Serde())
                    .withRetention(Duration.ofMillis(windowMs + graceMs + 60_000))) // as in count
            .toStream()
            .map((wk, a) -> KeyValue.pair(wk.key(), result(wk, "requests", a.count, "\"p99_latency_ms\":" + a.p99())))
            .to(output, Produced.with(Serdes.String(), Serdes.String()));
        break;
      }
      default:
        throw new IllegalArgumentException("unknown mode " + mode);
    }

    KafkaStreams streams = new KafkaStreams(b.build(), p);
    CountDownLatch done = new CountDownLatch(1);
    int restoreParts = Integer.parseInt(o.getOrDefault("restore_parts", "0"));
    if (restoreParts > 0) {
      java.util.concurrent.atomic.AtomicInteger restored = new java.util.concurrent.atomic.AtomicInteger();
      java.util.concurrent.atomic.AtomicLong records = new java.util.concurrent.atomic.AtomicLong();
      streams.setGlobalStateRestoreListener(new StateRestoreListener() {
        public void onRestoreStart(TopicPartition tp, String store, long start, long end) {}
        public void onBatchRestored(TopicPartition tp, String store, long end, long n) {}
        public void onRestoreEnd(TopicPartition tp, String store, long total) {
          records.addAndGet(total);
          if (restored.incrementAndGet() == restoreParts) {
            System.out.println("KRESTORED " + System.currentTimeMillis() + " " + records.get());
            System.out.flush();
          }
        }
      });
    }
    streams.setStateListener((now, before) -> {
      if (now == KafkaStreams.State.RUNNING) {
        System.out.println("KSTATE RUNNING " + System.currentTimeMillis());
        System.out.flush();
      }
      if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) done.countDown();
    });
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      streams.close(new KafkaStreams.CloseOptions().leaveGroup(true).timeout(Duration.ofSeconds(30)));
      done.countDown();
    }));
    streams.start();
    done.await();
  }
}
