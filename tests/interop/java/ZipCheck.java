import java.io.BufferedInputStream;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.util.Collections;
import java.util.zip.CRC32;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;
import java.util.zip.ZipInputStream;

/** Reads an archive with ZipFile (central directory) and ZipInputStream (local headers, streaming);
 *  prints "mode<TAB>name<TAB>size<TAB>crc-of-bytes-read" for every entry. */
public class ZipCheck {
    private static long crcOf(InputStream in, long[] size) throws IOException {
        CRC32 crc = new CRC32();
        byte[] buf = new byte[1 << 16];
        int n;
        while ((n = in.read(buf)) > 0) {
            crc.update(buf, 0, n);
            size[0] += n;
        }
        return crc.getValue();
    }

    public static void main(String[] args) throws IOException {
        try (ZipFile zf = new ZipFile(args[0])) {
            for (ZipEntry e : Collections.list(zf.entries())) {
                long[] size = {0};
                long crc;
                try (InputStream in = zf.getInputStream(e)) {
                    crc = crcOf(in, size);
                }
                if (crc != e.getCrc()) throw new IOException("ZipFile CRC mismatch: " + e.getName());
                System.out.println("ZipFile\t" + e.getName() + "\t" + size[0] + "\t" + crc);
            }
        }
        try (ZipInputStream zin = new ZipInputStream(new BufferedInputStream(new FileInputStream(args[0])))) {
            ZipEntry e;
            while ((e = zin.getNextEntry()) != null) {
                long[] size = {0};
                long crc = crcOf(zin, size);
                System.out.println("ZipInputStream\t" + e.getName() + "\t" + size[0] + "\t" + crc);
            }
        }
    }
}
