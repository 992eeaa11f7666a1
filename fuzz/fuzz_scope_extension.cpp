// Any bytes into the strict scope-extension decoder: it must either return a scope that
// validates and re-encodes to the same bytes, or throw kakunin::Error. Nothing else.
#include <cstdint>
#include <cstdlib>

#include "kakunin/scope_extension.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        const kakunin::Scope scope = kakunin::decode_scope_extension(data, size);
        kakunin::validate(scope);  // a decoded scope is always a valid one
        const std::vector<std::uint8_t> again = kakunin::encode_scope_extension(scope);
        // Strict DER: one encoding per value, so what decoded must re-encode byte for byte.
        if (again.size() != size || !std::equal(again.begin(), again.end(), data)) std::abort();
    } catch (const kakunin::Error&) {
    }
    return 0;
}
