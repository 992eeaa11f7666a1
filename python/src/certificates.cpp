// Certificates and keys: the agent certificate, trust anchor and CRL, certificate checks, the
// Kms (software or PKCS#11) and the credentials a Guard is built from.
#include <pybind11/chrono.h>
#include <pybind11/stl.h>

#include "bindings.hpp"
#include "kakunin/certificate.hpp"
#include "kakunin/guard.hpp"
#include "kakunin/kms.hpp"
#include "kakunin/pkcs11_kms.hpp"
#include "kakunin/software_kms.hpp"

namespace kakunin::python {

namespace {

std::vector<std::uint8_t> bytes_of(const py::bytes& b) {
    const std::string s = b;
    return std::vector<std::uint8_t>(s.begin(), s.end());
}

py::bytes to_bytes(const std::vector<std::uint8_t>& v) {
    return py::bytes(reinterpret_cast<const char*>(v.data()), v.size());
}

}  // namespace

void bind_certificates(py::module_& m) {
    py::enum_<CertificateStatus> status(m, "CertificateStatus");
    for (CertificateStatus s : {CertificateStatus::valid,
                                CertificateStatus::malformed,
                                CertificateStatus::wrong_ca,
                                CertificateStatus::bad_signature,
                                CertificateStatus::invalid_chain,
                                CertificateStatus::weak_algorithm,
                                CertificateStatus::not_yet_valid,
                                CertificateStatus::expired,
                                CertificateStatus::unknown_critical_extension,
                                CertificateStatus::no_scope,
                                CertificateStatus::scope_not_critical,
                                CertificateStatus::scope_invalid,
                                CertificateStatus::not_end_entity,
                                CertificateStatus::key_usage,
                                CertificateStatus::revoked,
                                CertificateStatus::crl_missing,
                                CertificateStatus::crl_expired,
                                CertificateStatus::crl_not_yet_valid,
                                CertificateStatus::crl_invalid,
                                CertificateStatus::key_mismatch})
        status.value(to_string(s), s);

    py::class_<CertificateCheck>(m, "CertificateCheck", "A certificate's status: a value.")
        .def_readonly("status", &CertificateCheck::status)
        .def_readonly("detail", &CertificateCheck::detail)
        .def_property_readonly("ok", &CertificateCheck::ok)
        .def("__bool__", &CertificateCheck::ok);

    py::class_<AgentCertificate>(m, "AgentCertificate")
        .def_static("load_file", &AgentCertificate::load_file, py::arg("path"),
                    py::arg("oid_arc") = std::string(default_oid_arc))
        .def_static("from_pem", &AgentCertificate::from_pem, py::arg("pem"),
                    py::arg("oid_arc") = std::string(default_oid_arc))
        .def_static(
            "from_der",
            [](const py::bytes& der, const std::string& arc) {
                return AgentCertificate::from_der(bytes_of(der), arc);
            },
            py::arg("der"), py::arg("oid_arc") = std::string(default_oid_arc))
        .def_property_readonly("der", [](const AgentCertificate& c) { return to_bytes(c.der()); })
        .def_property_readonly("pem", &AgentCertificate::pem)
        .def_property_readonly("fingerprint", &AgentCertificate::fingerprint)
        .def_property_readonly("serial", &AgentCertificate::serial)
        .def_property_readonly("not_before_ns", &AgentCertificate::not_before)
        .def_property_readonly("not_after_ns", &AgentCertificate::not_after)
        .def_property_readonly("agent_id", &AgentCertificate::agent_id)
        .def_property_readonly("subject", &AgentCertificate::subject)
        .def_property_readonly("issuer", &AgentCertificate::issuer)
        .def_property_readonly("scope", &AgentCertificate::scope,
                               "The scope in the certificate's critical extension.")
        .def("__repr__", [](const AgentCertificate& c) {
            return "AgentCertificate(" + c.subject() + ", serial " + c.serial() + ")";
        });

    py::class_<TrustAnchor>(m, "TrustAnchor")
        .def_static("load_file", &TrustAnchor::load_file, py::arg("path"))
        .def_static("from_pem", &TrustAnchor::from_pem, py::arg("pem"))
        .def_static(
            "from_der", [](const py::bytes& der) { return TrustAnchor::from_der(bytes_of(der)); },
            py::arg("der"))
        .def_property_readonly("der", [](const TrustAnchor& a) { return to_bytes(a.der()); })
        .def_property_readonly("pem", &TrustAnchor::pem)
        .def_property_readonly("fingerprint", &TrustAnchor::fingerprint)
        .def_property_readonly("subject", &TrustAnchor::subject);

    py::class_<CertificateRevocationList>(m, "CertificateRevocationList")
        .def_static("load_file", &CertificateRevocationList::load_file, py::arg("path"))
        .def_static("from_pem", &CertificateRevocationList::from_pem, py::arg("pem"))
        .def_static(
            "from_der",
            [](const py::bytes& der) { return CertificateRevocationList::from_der(bytes_of(der)); },
            py::arg("der"))
        .def_property_readonly("der",
                               [](const CertificateRevocationList& c) { return to_bytes(c.der()); })
        .def_property_readonly("pem", &CertificateRevocationList::pem)
        .def_property_readonly("this_update_ns", &CertificateRevocationList::this_update)
        .def_property_readonly("next_update_ns", &CertificateRevocationList::next_update)
        .def_property_readonly("revoked_serials", &CertificateRevocationList::revoked_serials)
        .def("lists", &CertificateRevocationList::lists, py::arg("serial_hex"));

    m.def(
        "verify_certificate",
        [](const AgentCertificate& cert, const TrustAnchor& anchor,
           const std::optional<CertificateRevocationList>& crl,
           TimeNs at_ns) { return verify_certificate(cert, anchor, crl ? &*crl : nullptr, at_ns); },
        py::arg("certificate"), py::arg("trust_anchor"), py::arg("crl"), py::arg("at_ns"),
        "Checks the certificate at a time (chain, signatures, validity, CRL, the scope "
        "extension): a CertificateCheck, never an exception for a bad certificate.");

    py::enum_<KeyAlgorithm>(m, "KeyAlgorithm")
        .value("ed25519", KeyAlgorithm::ed25519)
        .value("ecdsa_p256", KeyAlgorithm::ecdsa_p256);

    py::class_<KeyHandle>(m, "KeyHandle")
        .def(py::init([](std::string label, std::string id, KeyAlgorithm a) {
                 return KeyHandle{std::move(label), std::move(id), a};
             }),
             py::arg("label"), py::arg("id") = "", py::arg("algorithm") = KeyAlgorithm::ed25519)
        .def_readonly("label", &KeyHandle::label)
        .def_readonly("id", &KeyHandle::id)
        .def_readonly("algorithm", &KeyHandle::algorithm);

    // Kms calls may block on files, the key-derivation function or a token: the GIL is released.
    py::class_<Kms, std::shared_ptr<Kms>>(m, "Kms", "Where keys live; they never leave it.")
        .def("create_key", &Kms::create_key, py::arg("label"),
             py::arg("algorithm") = KeyAlgorithm::ed25519, py::call_guard<py::gil_scoped_release>())
        .def("find_key", &Kms::find_key, py::arg("label"), py::call_guard<py::gil_scoped_release>())
        .def("find_or_create_key", &Kms::find_or_create_key, py::arg("label"),
             py::arg("algorithm") = KeyAlgorithm::ed25519, py::call_guard<py::gil_scoped_release>())
        .def(
            "sign",
            [](Kms& kms, const KeyHandle& key, const py::bytes& message) {
                const std::string text = message;
                std::vector<std::uint8_t> sig;
                {
                    py::gil_scoped_release release;
                    sig = kms.sign(key, std::string_view(text));
                }
                return to_bytes(sig);
            },
            py::arg("key"), py::arg("message"))
        .def(
            "public_key_der",
            [](Kms& kms, const KeyHandle& key) {
                PublicKeyInfo info;
                {
                    py::gil_scoped_release release;
                    info = kms.public_key(key);
                }
                return to_bytes(info.spki_der);
            },
            py::arg("key"), "The key's SubjectPublicKeyInfo, DER.");

    py::class_<SoftwareKms, Kms, std::shared_ptr<SoftwareKms>>(m, "SoftwareKms")
        .def_static(
            "open",
            [](const std::string& directory, std::optional<std::string> passphrase) {
                py::gil_scoped_release release;
                return std::shared_ptr<SoftwareKms>(passphrase
                                                        ? SoftwareKms::open(directory, *passphrase)
                                                        : SoftwareKms::open(directory));
            },
            py::arg("directory"), py::arg("passphrase") = py::none(),
            "Encrypted key files in `directory`; the passphrase defaults to "
            "$KAKUNIN_KMS_PASSPHRASE.")
        .def_static("in_memory",
                    [] { return std::shared_ptr<SoftwareKms>(SoftwareKms::in_memory()); })
        .def_property_readonly("directory", &SoftwareKms::directory);

    py::class_<Pkcs11Kms, Kms, std::shared_ptr<Pkcs11Kms>>(m, "Pkcs11Kms")
        .def_static(
            "open",
            [](const std::string& module_path, const std::string& token_label,
               std::optional<std::string> pin) {
                const std::string p = pin ? *pin : Pkcs11Kms::pin_from_env();
                py::gil_scoped_release release;
                return std::shared_ptr<Pkcs11Kms>(Pkcs11Kms::open(module_path, token_label, p));
            },
            py::arg("module_path"), py::arg("token_label"), py::arg("pin") = py::none(),
            "A PKCS#11 token (HSM, SoftHSM2); the PIN defaults to $KAKUNIN_PKCS11_PIN.");

    py::class_<InProcessRevocationFeed, std::shared_ptr<InProcessRevocationFeed>>(
        m, "InProcessRevocationFeed", "Revocations pushed to the Guards subscribed to it.");

    py::class_<GuardCredentials>(m, "GuardCredentials",
                                 "Everything a Guard needs to enforce an agent's certificate.")
        .def(py::init([](AgentCertificate certificate, TrustAnchor trust_anchor,
                         std::optional<CertificateRevocationList> crl, std::shared_ptr<Kms> kms,
                         KeyHandle key, std::shared_ptr<InProcessRevocationFeed> feed) {
                 return GuardCredentials{std::move(certificate), std::move(trust_anchor),
                                         std::move(crl),         std::move(kms),
                                         std::move(key),         {},
                                         std::move(feed)};
             }),
             py::arg("certificate"), py::arg("trust_anchor"), py::arg("crl"), py::arg("kms"),
             py::arg("key"), py::arg("revocation_feed") = nullptr)
        .def_readonly("certificate", &GuardCredentials::certificate)
        .def_readonly("trust_anchor", &GuardCredentials::trust_anchor)
        .def_readonly("crl", &GuardCredentials::crl)
        .def_readonly("kms", &GuardCredentials::kms)
        .def_readonly("key", &GuardCredentials::key);
}

}  // namespace kakunin::python
