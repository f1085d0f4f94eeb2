package console.example;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.util.Collector;

/**
 * Counts the records of each key in keyed state, which checkpoints and savepoints carry, and emits
 * {@code key=<key> count=<n> seq=<sequence number>} for each.
 */
final class KeyedCounter extends KeyedProcessFunction<String, Long, String> {
    private static final long serialVersionUID = 1L;
    private transient ValueState<Long> count;

    @Override
    public void open(OpenContext context) {
        count = getRuntimeContext().getState(new ValueStateDescriptor<>("count", Types.LONG));
    }

    @Override
    public void processElement(Long seq, Context context, Collector<String> out) throws Exception {
        Long previous = count.value();
        long next = (previous == null ? 0 : previous) + 1;
        count.update(next);
        out.collect("key=" + context.getCurrentKey() + " count=" + next + " seq=" + seq);
    }
}
