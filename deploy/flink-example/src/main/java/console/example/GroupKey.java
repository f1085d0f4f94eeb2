package console.example;

import org.apache.flink.api.java.functions.KeySelector;

/** Spreads sequence numbers over {@code keys} groups named {@code k0}, {@code k1}, ... */
final class GroupKey implements KeySelector<Long, String> {
    private static final long serialVersionUID = 1L;
    private final int keys;

    GroupKey(int keys) {
        this.keys = keys;
    }

    @Override
    public String getKey(Long seq) {
        return "k" + (seq % keys);
    }
}
