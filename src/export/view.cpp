// Loading a package directory into the parsed form the timeline and the report are made from.
#include <dirent.h>

#include <algorithm>

#include "crypto/encoding.hpp"
#include "export/export_internal.hpp"
#include "kakunin/certificate.hpp"
#include "kakunin/error.hpp"
#include "x509/x509_internal.hpp"

namespace kakunin::export_detail {
namespace {

std::vector<std::string> names_in(const std::string& dir) {
    std::vector<std::string> out;
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return out;
    while (const dirent* e = ::readdir(d)) {
        const std::string name = e->d_name;
        if (name != "." && name != "..") out.push_back(name);
    }
    ::closedir(d);
    std::sort(out.begin(), out.end());
    return out;
}

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() &&
           s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

json parse_file(const std::string& dir, const std::string& rel) {
    const std::string text = read_file_bytes(dir + "/" + rel);
    try {
        return json::parse(text);
    } catch (const json::exception& e) {
        throw Error(ErrorCategory::invalid_input, rel + ": not JSON (" + e.what() + ")");
    }
}

/// "12" from "12.json" / "12.approval.json"; nullopt for anything else.
std::optional<std::uint64_t> baseline_version(const std::string& name, const std::string& suffix) {
    if (!ends_with(name, suffix)) return std::nullopt;
    const std::string digits = name.substr(0, name.size() - suffix.size());
    if (digits.empty() || digits.size() > 18 || digits[0] == '0') return std::nullopt;
    for (char c : digits)
        if (c < '0' || c > '9') return std::nullopt;
    return std::stoull(digits);
}

}  // namespace

PackageView load_package_view(const std::string& dir, const json& manifest) {
    PackageView v;
    v.manifest = manifest;
    v.registration = parse_file(dir, registration_file);

    for (const std::string& name : names_in(dir + "/" + certificates_dir)) {
        if (!ends_with(name, ".json")) continue;
        const std::string stem = name.substr(0, name.size() - 5);
        PackageView::Certificate c;
        c.path = certificates_dir + stem + ".pem";
        c.info = parse_file(dir, certificates_dir + name);
        v.certificates.push_back(std::move(c));
    }
    std::stable_sort(v.certificates.begin(), v.certificates.end(),
                     [](const auto& a, const auto& b) {
                         return a.info.value("not_before_ns", TimeNs{0}) <
                                b.info.value("not_before_ns", TimeNs{0});
                     });

    const TrustAnchor anchor = TrustAnchor::load_file(dir + "/" + ca_certificate_file);
    v.ca_certificate = {{"subject", anchor.subject()},
                        {"fingerprint", anchor.fingerprint()},
                        {"not_before_ns", x509::to_time_ns(anchor.impl().cert->not_before())},
                        {"not_after_ns", x509::to_time_ns(anchor.impl().cert->not_after())}};

    const CertificateRevocationList crl =
        CertificateRevocationList::load_file(dir + "/" + crl_file);
    // Each listed serial with the revocation date the CA signed into the CRL.
    json entries = json::array();
    for (const auto& entry : crl.impl().crl->get_revoked()) {
        if (entry.reason_code() == Botan::REMOVE_FROM_CRL) continue;
        json e = {{"serial", crypto::to_hex(entry.serial_number())}};
        try {
            e["revoked_at_ns"] = x509::to_time_ns(entry.expire_time());
        } catch (const std::exception&) {
            e["revoked_at_ns"] = nullptr;
        }
        entries.push_back(std::move(e));
    }
    v.crl = {{"this_update_ns", crl.this_update()},
             {"next_update_ns", crl.next_update()},
             {"revoked", crl.revoked_serials()},
             {"entries", entries}};

    if (file_exists(dir + "/" + scope_approval_file))
        v.scope_approval = parse_file(dir, scope_approval_file);

    std::map<std::uint64_t, PackageView::BaselineFiles> baselines;
    for (const std::string& name : names_in(dir + "/" + baselines_dir)) {
        if (const auto n = baseline_version(name, ".approval.json")) {
            baselines[*n].version = *n;
            baselines[*n].approval = parse_file(dir, baselines_dir + name);
        } else if (const auto m = baseline_version(name, ".json")) {
            baselines[*m].version = *m;
            baselines[*m].baseline = parse_file(dir, baselines_dir + name);
        }
    }
    for (auto& [n, b] : baselines) v.baselines.push_back(std::move(b));

    v.extract = parse_json_lines(read_file_bytes(dir + "/" + extract_file), extract_file);
    if (file_exists(dir + "/" + ca_log_file))
        v.ca_log = parse_json_lines(read_file_bytes(dir + "/" + ca_log_file), ca_log_file);
    if (file_exists(dir + "/" + timeline_file)) v.timeline = parse_file(dir, timeline_file);
    return v;
}

}  // namespace kakunin::export_detail
