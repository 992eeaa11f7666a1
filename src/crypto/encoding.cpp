#include "crypto/encoding.hpp"

#include <botan/base64.h>
#include <botan/hash.h>
#include <botan/hex.h>

#include "kakunin/error.hpp"

namespace kakunin::crypto {

std::string to_hex(const std::uint8_t* data, std::size_t size) {
    return Botan::hex_encode(data, size, false);
}

std::vector<std::uint8_t> from_hex(std::string_view hex, std::string_view what) {
    bool ok = hex.size() % 2 == 0;
    for (char c : hex)
        ok = ok && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'));
    if (!ok)
        throw Error(ErrorCategory::invalid_input,
                    std::string(what) + ": '" + std::string(hex) + "' is not hexadecimal");
    return Botan::hex_decode(hex.data(), hex.size(), false);
}

std::string base64_encode(const std::vector<std::uint8_t>& data) {
    return Botan::base64_encode(data.data(), data.size());
}

std::vector<std::uint8_t> base64_decode(std::string_view text, std::string_view what) {
    try {
        const Botan::secure_vector<std::uint8_t> v =
            Botan::base64_decode(text.data(), text.size(), false);
        return std::vector<std::uint8_t>(v.begin(), v.end());
    } catch (const std::exception&) {
        throw Error(ErrorCategory::invalid_input, std::string(what) + ": not valid base64");
    }
}

std::vector<std::uint8_t> sha256(const std::uint8_t* data, std::size_t size) {
    auto h = Botan::HashFunction::create_or_throw("SHA-256");
    h->update(data, size);
    const auto d = h->final();
    return std::vector<std::uint8_t>(d.begin(), d.end());
}

}  // namespace kakunin::crypto
