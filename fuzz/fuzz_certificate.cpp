// Any bytes as an agent certificate (DER or PEM): parsing throws kakunin::Error or yields a
// certificate; verification against a fixed anchor never throws and never says valid.
#include <cstdint>
#include <cstdlib>

#include "kakunin/certificate.hpp"
#include "kakunin/testing.hpp"

namespace {
struct Anchor {
    kakunin::TestAuthority authority;
    kakunin::TrustAnchor anchor = authority.ca().trust_anchor();
    kakunin::CertificateRevocationList crl = authority.ca().current_crl();
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static Anchor* fixed = new Anchor();
    const std::vector<std::uint8_t> bytes(data, data + size);
    try {
        const kakunin::AgentCertificate cert = kakunin::AgentCertificate::from_der(bytes);
        (void)cert.fingerprint();
        (void)cert.serial();
        if (cert.has_scope()) kakunin::validate(cert.scope());
    } catch (const kakunin::Error&) {
    }
    // Random bytes cannot carry a signature by the fixed CA's key.
    const kakunin::CertificateCheck r = kakunin::verify_certificate(
        bytes, fixed->anchor, &fixed->crl, fixed->authority.clock().now_ns());
    if (r.ok()) std::abort();
    return 0;
}
