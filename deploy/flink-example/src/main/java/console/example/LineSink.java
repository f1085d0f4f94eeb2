package console.example;

import java.io.BufferedWriter;
import java.io.IOException;
import java.io.PrintStream;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.nio.file.StandardOpenOption;

import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.WriterInitContext;

/**
 * Appends each record as one line to a file (created if missing, never truncated, so the lines of
 * a job restored from a savepoint follow those of the job it replaces), or prints it to stdout when
 * no file is named. Each line is flushed at once: a test reads the file while the job runs.
 */
final class LineSink implements Sink<String> {
    private static final long serialVersionUID = 1L;
    private final String path;

    LineSink(String path) {
        this.path = path;
    }

    @Override
    public SinkWriter<String> createWriter(WriterInitContext context) throws IOException {
        if (path == null) {
            return new StdoutWriter();
        }
        return new FileWriter(
                Files.newBufferedWriter(
                        Paths.get(path),
                        StandardCharsets.UTF_8,
                        StandardOpenOption.CREATE,
                        StandardOpenOption.APPEND));
    }

    private static final class FileWriter implements SinkWriter<String> {
        private final Writer out;

        FileWriter(BufferedWriter out) {
            this.out = out;
        }

        @Override
        public void write(String line, Context context) throws IOException {
            out.write(line);
            out.write('\n');
            out.flush();
        }

        @Override
        public void flush(boolean endOfInput) throws IOException {
            out.flush();
        }

        @Override
        public void close() throws IOException {
            out.close();
        }
    }

    private static final class StdoutWriter implements SinkWriter<String> {
        private final PrintStream out = System.out;

        @Override
        public void write(String line, Context context) {
            out.println(line);
        }

        @Override
        public void flush(boolean endOfInput) {
            out.flush();
        }

        @Override
        public void close() {
            out.flush();
        }
    }
}
