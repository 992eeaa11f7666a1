// Validating scanner for Kakunin's canonical JSON (see canonical_scan.hpp).
#include "audit/canonical_scan.hpp"

#include <cstring>

namespace kakunin::audit_detail {

namespace {

constexpr int kMaxDepth = 256;

bool is_lower_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }
int hex_value(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

// Bytes that a canonical string holds as they are and that need no further check.
struct PlainTable {
    bool v[256];
    constexpr PlainTable() : v() {
        for (int c = 0x20; c < 0x80; ++c) v[c] = c != '"' && c != '\\';
    }
    constexpr bool operator[](unsigned char c) const { return v[c]; }
};
constexpr PlainTable kPlain{};

// Byte-wise a < b for short member names (an inline loop beats a memcmp call here).
inline bool less(std::string_view a, std::string_view b) {
    const std::size_t n = a.size() < b.size() ? a.size() : b.size();
    for (std::size_t i = 0; i < n; ++i) {
        if (a[i] != b[i])
            return static_cast<unsigned char>(a[i]) < static_cast<unsigned char>(b[i]);
    }
    return a.size() < b.size();
}

class Scanner {
public:
    Scanner(const char* begin, const char* end) : m_p(begin), m_end(end) {}

    bool at_end() const { return m_p == m_end; }

    bool value(int depth) {
        if (m_p == m_end) return false;
        switch (*m_p) {
            case '{': return object(depth + 1, nullptr, 0, nullptr);
            case '[': return array(depth + 1);
            case '"': return string(nullptr);
            case 't': return literal("true", 4);
            case 'f': return literal("false", 5);
            case 'n': return literal("null", 4);
            default: return number();
        }
    }

    // `members`/`max`/`count`: when given, the top-level members are recorded.
    bool object(int depth, CanonicalMember* members, std::size_t max, std::size_t* count) {
        if (depth > kMaxDepth) return false;
        ++m_p;  // '{'
        if (m_p == m_end) return false;
        if (*m_p == '}') {
            ++m_p;
            return true;
        }
        std::string prev_storage;
        std::string key_storage;
        std::string_view prev;
        bool first = true;
        std::size_t n = 0;
        for (;;) {
            if (m_p == m_end || *m_p != '"') return false;
            const char* name_begin = m_p + 1;
            bool escaped = false;
            if (!string(&escaped)) return false;
            std::string_view raw(name_begin, static_cast<std::size_t>(m_p - 1 - name_begin));
            std::string_view key = raw;
            if (escaped) {
                if (!decode_canonical_string(std::string_view(name_begin - 1, raw.size() + 2),
                                             key_storage)) {
                    return false;
                }
                key = key_storage;
            }
            for (char c : key) {
                if (static_cast<unsigned char>(c) >= 0x80) return false;  // non-ASCII name
            }
            if (!first && !less(prev, key)) return false;  // unsorted or duplicate
            if (escaped) {
                prev_storage = key_storage;
                prev = prev_storage;
            } else {
                prev = key;
            }
            first = false;
            if (m_p == m_end || *m_p != ':') return false;
            ++m_p;
            const char* value_begin = m_p;
            if (!value(depth)) return false;
            if (members != nullptr) {
                if (n == max) return false;
                members[n] = CanonicalMember{
                    raw,
                    std::string_view(value_begin, static_cast<std::size_t>(m_p - value_begin))};
            }
            ++n;
            if (m_p == m_end) return false;
            if (*m_p == '}') {
                ++m_p;
                if (count != nullptr) *count = n;
                return true;
            }
            if (*m_p != ',') return false;
            ++m_p;
        }
    }

private:
    bool array(int depth) {
        if (depth > kMaxDepth) return false;
        ++m_p;  // '['
        if (m_p == m_end) return false;
        if (*m_p == ']') {
            ++m_p;
            return true;
        }
        for (;;) {
            if (!value(depth)) return false;
            if (m_p == m_end) return false;
            if (*m_p == ']') {
                ++m_p;
                return true;
            }
            if (*m_p != ',') return false;
            ++m_p;
        }
    }

    bool literal(const char* word, std::size_t n) {
        if (static_cast<std::size_t>(m_end - m_p) < n || std::memcmp(m_p, word, n) != 0) {
            return false;
        }
        m_p += n;
        return true;
    }

    bool number() {
        bool negative = false;
        if (*m_p == '-') {
            negative = true;
            ++m_p;
        }
        if (m_p == m_end || *m_p < '0' || *m_p > '9') return false;
        if (*m_p == '0') {
            ++m_p;
            if (negative) return false;  // "-0" is written "0"
        } else {
            std::uint64_t v = 0;
            const std::uint64_t limit =
                negative ? std::uint64_t{1} << 63 : ~std::uint64_t{0};  // |INT64_MIN|, UINT64_MAX
            while (m_p != m_end && *m_p >= '0' && *m_p <= '9') {
                const std::uint64_t d = static_cast<std::uint64_t>(*m_p - '0');
                if (v > (limit - d) / 10) return false;  // would not be an integer for nlohmann
                v = v * 10 + d;
                ++m_p;
            }
        }
        // A fraction or an exponent makes a floating-point number: refused.
        if (m_p != m_end &&
            (*m_p == '.' || *m_p == 'e' || *m_p == 'E' || (*m_p >= '0' && *m_p <= '9'))) {
            return false;
        }
        return true;
    }

    // At the opening quote; leaves m_p after the closing quote.
    bool string(bool* escaped) {
        ++m_p;
        while (m_p != m_end) {
            // Plain printable ASCII is by far the common case: skip it in a tight loop.
            {
                const char* p = m_p;
                const char* const e = m_end;
                while (p != e && kPlain[static_cast<unsigned char>(*p)]) ++p;
                m_p = p;
            }
            if (m_p == m_end) return false;
            const unsigned char c = static_cast<unsigned char>(*m_p);
            if (c == '"') {
                ++m_p;
                return true;
            }
            if (c < 0x20) return false;
            if (c == '\\') {
                if (escaped != nullptr) *escaped = true;
                if (++m_p == m_end) return false;
                switch (*m_p) {
                    case '"':
                    case '\\':
                    case 'b':
                    case 'f':
                    case 'n':
                    case 'r':
                    case 't': ++m_p; break;
                    case 'u': {
                        if (m_end - m_p < 5 || m_p[1] != '0' || m_p[2] != '0' ||
                            !is_lower_hex(m_p[3]) || !is_lower_hex(m_p[4])) {
                            return false;
                        }
                        const int v = hex_value(m_p[3]) * 16 + hex_value(m_p[4]);
                        // Only control characters without a short escape are written \u00xx.
                        if (v >= 0x20 || v == 0x08 || v == 0x09 || v == 0x0a || v == 0x0c ||
                            v == 0x0d) {
                            return false;
                        }
                        m_p += 5;
                        break;
                    }
                    default: return false;
                }
                continue;
            }
            if (c < 0x80) {
                ++m_p;
                continue;
            }
            if (!utf8()) return false;
        }
        return false;
    }

    // Validates one multi-byte UTF-8 sequence (RFC 3629: no overlongs, no surrogates, <= U+10FFFF).
    bool utf8() {
        const auto* s = reinterpret_cast<const unsigned char*>(m_p);
        const std::size_t left = static_cast<std::size_t>(m_end - m_p);
        auto cont = [&](std::size_t i) { return i < left && (s[i] & 0xc0) == 0x80; };
        if (s[0] >= 0xc2 && s[0] <= 0xdf) {
            if (!cont(1)) return false;
            m_p += 2;
        } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
            if (!cont(1) || !cont(2)) return false;
            if (s[0] == 0xe0 && s[1] < 0xa0) return false;   // overlong
            if (s[0] == 0xed && s[1] >= 0xa0) return false;  // surrogate
            m_p += 3;
        } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
            if (!cont(1) || !cont(2) || !cont(3)) return false;
            if (s[0] == 0xf0 && s[1] < 0x90) return false;   // overlong
            if (s[0] == 0xf4 && s[1] >= 0x90) return false;  // above U+10FFFF
            m_p += 4;
        } else {
            return false;
        }
        return true;
    }

    const char* m_p;
    const char* m_end;
};

}  // namespace

bool is_canonical_json(std::string_view text) noexcept {
    try {
        Scanner s(text.data(), text.data() + text.size());
        return s.value(0) && s.at_end();
    } catch (...) {
        return false;  // allocation failure while decoding an escaped member name
    }
}

bool scan_canonical_object(std::string_view text, CanonicalMember* members, std::size_t max,
                           std::size_t& count) noexcept {
    try {
        if (text.empty() || text.front() != '{') return false;
        Scanner s(text.data(), text.data() + text.size());
        count = 0;
        return s.object(1, members, max, &count) && s.at_end();
    } catch (...) {
        return false;
    }
}

bool decode_canonical_string(std::string_view quoted, std::string& out) {
    if (quoted.size() < 2 || quoted.front() != '"' || quoted.back() != '"') return false;
    const std::string_view body = quoted.substr(1, quoted.size() - 2);
    if (body.find('\\') == std::string_view::npos) {
        out.assign(body.data(), body.size());
        return true;
    }
    out.clear();
    for (std::size_t i = 0; i < body.size(); ++i) {
        const char c = body[i];
        if (c != '\\') {
            out.push_back(c);
            continue;
        }
        if (++i >= body.size()) return false;
        switch (body[i]) {
            case '"': out.push_back('"'); break;
            case '\\': out.push_back('\\'); break;
            case 'b': out.push_back('\b'); break;
            case 'f': out.push_back('\f'); break;
            case 'n': out.push_back('\n'); break;
            case 'r': out.push_back('\r'); break;
            case 't': out.push_back('\t'); break;
            case 'u':
                if (i + 4 >= body.size() || body[i + 1] != '0' || body[i + 2] != '0' ||
                    !is_lower_hex(body[i + 3]) || !is_lower_hex(body[i + 4])) {
                    return false;
                }
                out.push_back(
                    static_cast<char>(hex_value(body[i + 3]) * 16 + hex_value(body[i + 4])));
                i += 4;
                break;
            default: return false;
        }
    }
    return true;
}

bool parse_canonical_u64(std::string_view text, std::uint64_t& out) noexcept {
    if (text.empty() || text.size() > 20) return false;
    std::uint64_t v = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return false;
        const std::uint64_t d = static_cast<std::uint64_t>(c - '0');
        if (v > (~std::uint64_t{0} - d) / 10) return false;
        v = v * 10 + d;
    }
    out = v;
    return true;
}

bool parse_canonical_i64(std::string_view text, std::int64_t& out) noexcept {
    const bool negative = !text.empty() && text.front() == '-';
    std::uint64_t magnitude = 0;
    if (!parse_canonical_u64(negative ? text.substr(1) : text, magnitude)) return false;
    if (negative) {
        if (magnitude > (std::uint64_t{1} << 63)) return false;
        out = magnitude == (std::uint64_t{1} << 63) ? INT64_MIN
                                                    : -static_cast<std::int64_t>(magnitude);
    } else {
        if (magnitude > static_cast<std::uint64_t>(INT64_MAX)) return false;
        out = static_cast<std::int64_t>(magnitude);
    }
    return true;
}

}  // namespace kakunin::audit_detail
