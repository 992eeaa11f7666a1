// DIR.tar.gz of a package: a POSIX ustar archive (IEEE Std 1003.1, "pax" chapter, ustar
// interchange format) written here, compressed with Botan 2's gzip compressor (zlib). Written by
// hand because no Debian 12 library the project uses writes tar; the format is 512-byte headers
// with octal fields, each file's data padded to 512 bytes, two zero blocks at the end.
#include <botan/compression.h>

#include <cstring>
#include <memory>

#include "export/export_internal.hpp"
#include "kakunin/error.hpp"

namespace kakunin::export_detail {
namespace {

constexpr std::size_t block = 512;
constexpr std::size_t record = 20 * block;  // GNU tar's default blocking factor

void put_octal(char* field, std::size_t width, std::uint64_t value) {
    // width-1 octal digits, zero-padded, then NUL
    std::string digits(width - 1, '0');
    for (std::size_t i = width - 1; i-- > 0;) {
        digits[i] = static_cast<char>('0' + (value & 7));
        value >>= 3;
    }
    if (value != 0) throw Error(ErrorCategory::invalid_input, "tar: value too large for field");
    std::memcpy(field, digits.data(), width - 1);
    field[width - 1] = '\0';
}

void put_text(char* field, std::size_t width, const std::string& text) {
    if (text.size() > width) throw Error(ErrorCategory::invalid_input, "tar: name too long");
    std::memcpy(field, text.data(), text.size());
}

/// One ustar header. Names up to 100 bytes go in `name`; longer ones are split at a '/' into
/// `prefix` (up to 155) and `name`.
std::string header(const std::string& path, std::uint64_t size, bool directory,
                   std::int64_t mtime_s) {
    char h[block];
    std::memset(h, 0, sizeof h);
    std::string name = path, prefix;
    if (name.size() > 100) {
        const std::size_t split = name.rfind('/', name.size() - 2);
        if (split == std::string::npos || split > 155 || name.size() - split - 1 > 100)
            throw Error(ErrorCategory::invalid_input, "tar: path too long: " + path);
        prefix = name.substr(0, split);
        name = name.substr(split + 1);
    }
    put_text(h + 0, 100, name);
    put_octal(h + 100, 8, directory ? 0755 : 0644);
    put_octal(h + 108, 8, 0);  // uid
    put_octal(h + 116, 8, 0);  // gid
    put_octal(h + 124, 12, directory ? 0 : size);
    put_octal(h + 136, 12, static_cast<std::uint64_t>(mtime_s < 0 ? 0 : mtime_s));
    std::memset(h + 148, ' ', 8);  // checksum is computed with spaces here
    h[156] = directory ? '5' : '0';
    std::memcpy(h + 257, "ustar", 6);  // magic "ustar\0"
    std::memcpy(h + 263, "00", 2);     // version
    put_text(h + 265, 32, "root");
    put_text(h + 297, 32, "root");
    put_octal(h + 329, 8, 0);
    put_octal(h + 337, 8, 0);
    put_text(h + 345, 155, prefix);
    unsigned sum = 0;
    for (unsigned char c : h) sum += c;
    put_octal(h + 148, 7, sum);  // six digits, NUL ...
    h[155] = ' ';                // ... and a space, as POSIX tar writes it
    return std::string(h, sizeof h);
}

}  // namespace

void write_tar_gz(const std::string& dir, const std::string& top,
                  const std::vector<std::string>& entries, const std::string& out_path,
                  std::int64_t mtime_s) {
    std::string tar;
    tar += header(top + "/", 0, true, mtime_s);
    for (const std::string& entry : entries) {
        const bool directory = !entry.empty() && entry.back() == '/';
        if (directory) {
            tar += header(top + "/" + entry, 0, true, mtime_s);
            continue;
        }
        const std::string data = read_file_bytes(dir + "/" + entry);
        tar += header(top + "/" + entry, data.size(), false, mtime_s);
        tar += data;
        tar.append((block - data.size() % block) % block, '\0');
    }
    tar.append(2 * block, '\0');
    tar.append((record - tar.size() % record) % record, '\0');

    std::unique_ptr<Botan::Compression_Algorithm> gzip(Botan::make_compressor("gzip"));
    if (!gzip) throw Error(ErrorCategory::crypto, "this Botan build has no gzip compressor (zlib)");
    Botan::secure_vector<std::uint8_t> buffer(tar.begin(), tar.end());
    gzip->start(9);
    gzip->finish(buffer);
    write_file_bytes(out_path, std::string(buffer.begin(), buffer.end()));
}

}  // namespace kakunin::export_detail
