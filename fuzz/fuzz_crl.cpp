// Any bytes as a CRL (DER or PEM), loaded and decoded through the API the Guard and the verifiers
// use: loading throws kakunin::Error or yields a CRL whose fields can all be read; checking a
// genuine certificate against it never throws, and says valid only for a CRL that says what the
// CA's genuine CRL says (the fuzzer cannot make the CA's signature).
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "kakunin/certificate.hpp"
#include "kakunin/testing.hpp"

namespace {

const char* const seed_scope = R"({"version":1,
  "max_transaction":{"currency":"EUR","amount":"500000.00"},
  "instruments":["BTC_EUR"],"counterparties":["exchange_a"],
  "trading_hours":[{"days":["Mon","Tue","Wed","Thu","Fri"],"from":"07:00","to":"20:00"}],
  "regions":["eu-west-1"]})";
struct Fixed {
    kakunin::TestAuthority authority;
    kakunin::GuardCredentials agent =
        authority.credentials_for(kakunin::parse_scope_json(seed_scope));
    kakunin::TrustAnchor anchor = authority.ca().trust_anchor();
    kakunin::CertificateRevocationList crl = authority.ca().current_crl();
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static Fixed* fixed = new Fixed();
    const std::vector<std::uint8_t> bytes(data, data + size);
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    std::optional<kakunin::CertificateRevocationList> crl;
    try {
        crl.emplace(text.find("-----BEGIN") != std::string_view::npos
                        ? kakunin::CertificateRevocationList::from_pem(text)
                        : kakunin::CertificateRevocationList::from_der(bytes));
    } catch (const kakunin::Error&) {
        return 0;
    }
    (void)crl->pem();
    (void)crl->this_update();
    (void)crl->next_update();
    const std::vector<std::string> serials = crl->revoked_serials();
    for (const auto& s : serials)
        if (!crl->lists(s)) std::abort();
    (void)crl->lists(fixed->agent.certificate.serial());
    const kakunin::CertificateCheck r = kakunin::verify_certificate(
        fixed->agent.certificate, fixed->anchor, &*crl, fixed->authority.clock().now_ns());
    if (r.ok() && (serials != fixed->crl.revoked_serials() ||
                   crl->this_update() != fixed->crl.this_update() ||
                   crl->next_update() != fixed->crl.next_update()))
        std::abort();
    return 0;
}
