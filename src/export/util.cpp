// Small helpers of the compliance export: files, hashes, JSON Lines, HTML text.
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "crypto/encoding.hpp"
#include "export/export_internal.hpp"
#include "io/durable_file.hpp"
#include "kakunin/error.hpp"

namespace kakunin::export_detail {

const std::vector<std::string>& required_files() {
    static const std::vector<std::string> files = {
        registration_file, ca_certificate_file, crl_file,      extract_file,
        inclusion_file,    consistency_file,    timeline_file, report_file};
    return files;
}

std::string read_file_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(ErrorCategory::io, path + ": cannot read (" + std::strerror(errno) + ")");
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) throw Error(ErrorCategory::io, path + ": read failed");
    return ss.str();
}

void write_file_bytes(const std::string& path, const std::string& bytes) {
    io::write_durable(path, bytes);
}

bool file_exists(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool is_dir(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

void make_dirs(const std::string& path) {
    std::string partial;
    std::size_t pos = 0;
    while (pos != std::string::npos) {
        pos = path.find('/', pos + 1);
        partial = path.substr(0, pos);
        if (partial.empty()) continue;
        if (::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST)
            throw Error(ErrorCategory::io,
                        "cannot create " + partial + ": " + std::strerror(errno));
    }
}

std::string sha256_hex(std::string_view bytes) { return crypto::sha256_hex(bytes); }

std::vector<LogLine> parse_json_lines(std::string_view text, const std::string& file) {
    std::vector<LogLine> out;
    std::size_t start = 0;
    std::uint64_t number = 0;
    while (start < text.size()) {
        ++number;
        const std::size_t end = text.find('\n', start);
        if (end == std::string_view::npos)
            throw Error(ErrorCategory::invalid_input,
                        file + " line " + std::to_string(number) + ": no newline at the end");
        LogLine line;
        line.number = number;
        line.text = std::string(text.substr(start, end - start));
        try {
            line.value = json::parse(line.text);
        } catch (const json::exception& e) {
            throw Error(ErrorCategory::invalid_input,
                        file + " line " + std::to_string(number) + ": not JSON (" + e.what() + ")");
        }
        if (!line.value.is_object())
            throw Error(ErrorCategory::invalid_input,
                        file + " line " + std::to_string(number) + ": not a JSON object");
        out.push_back(std::move(line));
        start = end + 1;
    }
    return out;
}

std::string html_escape(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            case '\'': out += "&#39;"; break;
            default: out += c;
        }
    }
    return out;
}

std::string human_time(TimeNs t) {
    const CivilTime c = civil_from_ns(t);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04lld-%02u-%02u %02u:%02u:%02u UTC",
                  static_cast<long long>(c.year), c.month, c.day, c.hour, c.minute, c.second);
    return buf;
}

}  // namespace kakunin::export_detail
