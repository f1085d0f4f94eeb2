package console.example;

import java.time.Duration;

import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.connector.source.util.ratelimit.RateLimiterStrategy;
import org.apache.flink.connector.datagen.source.DataGeneratorSource;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;

/**
 * The console's example job: a stateful streaming counter.
 *
 * <p>A source emits a sequence number at a modest rate; the numbers are keyed into {@code --keys}
 * groups, and each group counts what it has seen in keyed {@code ValueState}. Every record becomes
 * one line {@code key=k0 count=<n> seq=<sequence number>}, appended to the {@code --output} file
 * (or printed to the TaskManager's stdout without it).
 *
 * <p>The count is the proof that state survives: after stop-with-savepoint and a start from that
 * savepoint, a key's first count is its last count before the stop plus one. Without restore it
 * starts over at 1. Operator uids are fixed so a savepoint maps onto a new submission.
 *
 * <p>Arguments: {@code --output PATH} (default: stdout), {@code --rate RECORDS_PER_SECOND} (10),
 * {@code --keys N} (1), {@code --checkpoint-interval-ms MS} (10000).
 */
public final class CounterJob {
    private CounterJob() {}

    public static void main(String[] args) throws Exception {
        String output = null;
        double rate = 10;
        int keys = 1;
        long checkpointIntervalMs = 10_000;
        for (int i = 0; i < args.length; i += 2) {
            if (i + 1 >= args.length) {
                throw new IllegalArgumentException("argument " + args[i] + " has no value");
            }
            String value = args[i + 1];
            switch (args[i]) {
                case "--output":
                    output = value;
                    break;
                case "--rate":
                    rate = Double.parseDouble(value);
                    break;
                case "--keys":
                    keys = Integer.parseInt(value);
                    break;
                case "--checkpoint-interval-ms":
                    checkpointIntervalMs = Long.parseLong(value);
                    break;
                default:
                    throw new IllegalArgumentException(
                            "unknown argument " + args[i]
                                    + " (known: --output, --rate, --keys, --checkpoint-interval-ms)");
            }
        }
        if (!(rate > 0) || keys < 1 || checkpointIntervalMs < 10) {
            throw new IllegalArgumentException(
                    "--rate must be > 0, --keys >= 1, --checkpoint-interval-ms >= 10");
        }

        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        env.enableCheckpointing(checkpointIntervalMs);
        env.getCheckpointConfig().setMinPauseBetweenCheckpoints(Duration.ofSeconds(1).toMillis());

        DataGeneratorSource<Long> ticks =
                new DataGeneratorSource<>(
                        new Sequence(), Long.MAX_VALUE, RateLimiterStrategy.perSecond(rate), Types.LONG);
        env.fromSource(ticks, WatermarkStrategy.noWatermarks(), "ticks")
                .uid("ticks")
                .keyBy(new GroupKey(keys))
                .process(new KeyedCounter())
                .uid("counter")
                .name("counter")
                .sinkTo(new LineSink(output))
                .uid("output")
                .name("output")
                .setParallelism(1);
        env.execute("console-example-counter");
    }
}
