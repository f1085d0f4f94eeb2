package console.example;

import org.apache.flink.connector.datagen.source.GeneratorFunction;

/** The source's generator: the record for index {@code i} is {@code i} itself. */
final class Sequence implements GeneratorFunction<Long, Long> {
    private static final long serialVersionUID = 1L;

    @Override
    public Long map(Long index) {
        return index;
    }
}
