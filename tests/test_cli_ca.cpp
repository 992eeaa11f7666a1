// The CA command line end to end: the real `kakunin` program (KAKUNIN_CLI_PATH) run in temporary
// state directories, its certificates and CRLs checked by the openssl program, with the software
// KMS and on a real SoftHSM2 token.
#include <catch2/catch.hpp>

#include <unistd.h>
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "cli_test_support.hpp"
#include "kakunin/scope.hpp"
#include "pkcs11_test_support.hpp"
#include "support.hpp"
#include "temp_dir.hpp"

using json = nlohmann::json;
using kakunin_test::read_text;
using kakunin_test::shell_quote;
using kakunin_test::write_text;
namespace fs = std::filesystem;

namespace {

constexpr const char* k_passphrase = "correct horse battery staple";

struct TempDir : kakunin::test::TempDir {
    TempDir() : kakunin::test::TempDir("kakunin-cli-ca") {}
};

using kakunin::test::require_ok;
using kakunin::test::Run;
using kakunin::test::run_in;

/// `env` is a list of VAR=value words (quoted by the caller) or "-u VAR" for env(1).
Run cli(const std::string& args, const TempDir& dir,
        const std::string& env = std::string("KAKUNIN_KMS_PASSPHRASE=") +
                                 shell_quote(k_passphrase)) {
    return run_in(dir, "env " + env + " " + shell_quote(KAKUNIN_CLI_PATH) + " " + args);
}

/// A failure with exactly one line on stderr, "kakunin: ...", containing `fragment`.
void require_one_line_error(const Run& r, const std::string& fragment) {
    INFO("stdout: " << r.out << "\nstderr: " << r.err);
    CHECK(r.code != 0);
    CHECK(r.err.rfind("kakunin: ", 0) == 0);
    REQUIRE(!r.err.empty());
    CHECK(r.err.back() == '\n');
    CHECK(r.err.find('\n') == r.err.size() - 1);
    CHECK_THAT(r.err, Catch::Contains(fragment));
}

void require_openssl() {
    if (!kakunin_test::on_path("openssl"))
        FAIL("the openssl program is not installed: run scripts/test");
}

json inspect(const TempDir& dir, const std::string& cert) {
    const Run r = cli("cert inspect " + shell_quote(cert), dir);
    require_ok(r, "cert inspect");
    return json::parse(r.out);
}

json canonical_scope(const std::string& text) {
    return json::parse(kakunin::to_json(kakunin::parse_scope_json(text)));
}

/// ca init, agent register and scope approve for agent-7 in dir/state with the seed scope.
void set_up_agent(const TempDir& dir, const std::string& init_extra = "",
                  const std::string& env = std::string("KAKUNIN_KMS_PASSPHRASE=") +
                                           shell_quote(k_passphrase)) {
    write_text(dir / "scope.json", kakunin::test::seed_scope_json);
    require_ok(cli("ca init --dir state " + init_extra, dir, env), "ca init");
    require_ok(cli("agent register --dir state --agent agent-7 --owner 'Desk 3' "
                   "--purpose 'BTC market making' --by 'Jane Roe'",
                   dir, env),
               "agent register");
    require_ok(cli("scope approve --dir state --agent agent-7 --scope scope.json "
                   "--approver 'Jane Doe'",
                   dir, env),
               "scope approve");
}

/// The part of the flow after set-up: issue, inspect, verify, openssl, revoke, CRL, refusals.
void issue_verify_revoke(const TempDir& dir, const std::string& env) {
    require_openssl();
    const Run issued =
        cli("cert issue --dir state --agent agent-7 --out agent.pem --json", dir, env);
    require_ok(issued, "cert issue");
    const json summary = json::parse(issued.out);
    const std::string serial = summary.at("serial").get<std::string>();
    CHECK(fs::exists(dir / ("state/certs/" + serial + ".pem")));

    const json j = inspect(dir, "agent.pem");
    CHECK(j.at("agent") == "agent-7");
    CHECK(j.at("serial") == serial);
    CHECK(j.at("fingerprint") == summary.at("fingerprint"));
    CHECK(j.at("simulation") == false);
    CHECK(j.at("scope_critical") == true);
    CHECK(j.at("scope") == canonical_scope(kakunin::test::seed_scope_json));
    CHECK_THAT(j.at("subject").get<std::string>(), Catch::Contains("agent-7"));
    CHECK_THAT(j.at("issuer").get<std::string>(), Catch::Contains("Kakunin CA"));
    CHECK(j.at("not_after_ns").get<std::int64_t>() - j.at("not_before_ns").get<std::int64_t>() ==
          24LL * 3600 * 1'000'000'000);
    CHECK(j.at("not_before").get<std::string>().back() == 'Z');

    const Run ok = cli("cert verify --dir state agent.pem", dir, env);
    require_ok(ok, "cert verify");
    CHECK_THAT(ok.out, Catch::Contains("valid"));
    const Run ok_json = cli("cert verify --dir state --json agent.pem", dir, env);
    require_ok(ok_json, "cert verify --json");
    const json valid = json::parse(ok_json.out);
    CHECK(valid.at("valid") == true);
    CHECK(valid.at("status") == "valid");

    // An independent implementation reads and accepts what the CA made.
    const Run text = run_in(dir, "openssl x509 -in agent.pem -noout -text");
    require_ok(text, "openssl x509 -text");
    CHECK_THAT(text.out, Catch::Contains("1.3.6.1.4.1.32473.1.1: critical"));
    CHECK_THAT(text.out, Catch::Contains("CN = agent-7"));
    const std::string openssl_verify =
        "openssl verify -ignore_critical -crl_check -CAfile state/ca.pem -CRLfile crl.pem "
        "agent.pem";
    require_ok(cli("crl --dir state --out crl.pem", dir, env), "crl");
    const Run accepted = run_in(dir, openssl_verify);
    require_ok(accepted, "openssl verify");
    CHECK_THAT(accepted.out, Catch::Contains("agent.pem: OK"));
    // Without -ignore_critical OpenSSL refuses: the scope extension is critical.
    const Run critical =
        run_in(dir, "openssl verify -crl_check -CAfile state/ca.pem -CRLfile crl.pem agent.pem");
    CHECK(critical.code != 0);
    CHECK_THAT(critical.out + critical.err, Catch::Contains("unhandled critical extension"));

    const Run revoked = cli("cert revoke --dir state --serial " + serial +
                                " --reason 'keyCompromise: anomaly score 0.91'",
                            dir, env);
    require_ok(revoked, "cert revoke");
    CHECK_THAT(revoked.out, Catch::Contains(serial));
    require_ok(cli("crl --dir state --out crl.pem", dir, env), "crl after revoke");
    const Run crl_text = run_in(dir, "openssl crl -in crl.pem -noout -text");
    require_ok(crl_text, "openssl crl -text");
    CHECK_THAT(crl_text.out, Catch::Contains("Key Compromise"));

    require_one_line_error(cli("cert verify --dir state agent.pem", dir, env),
                           "kakunin: revoked: ");
    const Run refused_json = cli("cert verify --dir state --json agent.pem", dir, env);
    CHECK(refused_json.code != 0);
    const json r = json::parse(refused_json.out);
    CHECK(r.at("valid") == false);
    CHECK(r.at("status") == "revoked");
    const Run refused = run_in(dir, openssl_verify);
    CHECK(refused.code != 0);
    CHECK_THAT(refused.out + refused.err, Catch::Contains("certificate revoked"));

    // Revoking again is harmless; a serial the CA never issued is not.
    require_ok(cli("cert revoke --dir state --serial " + serial + " --reason superseded", dir, env),
               "second revoke");
    require_one_line_error(
        cli("cert revoke --dir state --serial 0badc0de --reason superseded", dir, env),
        "unknown serial '0badc0de'");
}

}  // namespace

TEST_CASE("cli ca: the whole flow with the software KMS", "[cli][ca]") {
    TempDir dir;
    set_up_agent(dir);
    CHECK(fs::exists(dir / "state/ca.pem"));
    CHECK(fs::exists(dir / "state/crl.pem"));
    const json kms = json::parse(read_text(dir / "state/kms.json"));
    CHECK(kms.at("backend") == "software");
    CHECK(kms.at("algorithm") == "ed25519");
    CHECK(read_text(dir / "state/kms.json").find(k_passphrase) == std::string::npos);
    // Every key is an encrypted PKCS#8 file: CA, approver (made on first use).
    int keys = 0;
    for (const auto& entry : fs::directory_iterator(dir / "state/keys")) {
        ++keys;
        const std::string pem = read_text(entry.path());
        CHECK_THAT(pem, Catch::Contains("BEGIN ENCRYPTED PRIVATE KEY"));
        CHECK(pem.find(k_passphrase) == std::string::npos);
    }
    CHECK(keys == 2);
    issue_verify_revoke(dir, std::string("KAKUNIN_KMS_PASSPHRASE=") + shell_quote(k_passphrase));
}

TEST_CASE("cli ca: validity and ECDSA P-256 and a renewal under the same approval", "[cli][ca]") {
    TempDir dir;
    set_up_agent(dir, "--algorithm ecdsa-p256");
    require_ok(cli("cert issue --dir state --agent agent-7 --validity 90s --out short.pem", dir),
               "issue 90s");
    const json short_lived = inspect(dir, "short.pem");
    CHECK(short_lived.at("not_after_ns").get<std::int64_t>() -
              short_lived.at("not_before_ns").get<std::int64_t>() ==
          90LL * 1'000'000'000);
    require_ok(cli("cert issue --dir state --agent agent-7 --validity 7d --out week.pem", dir),
               "issue 7d");
    const json week = inspect(dir, "week.pem");
    CHECK(week.at("not_after_ns").get<std::int64_t>() -
              week.at("not_before_ns").get<std::int64_t>() ==
          7LL * 86400 * 1'000'000'000);
    CHECK(week.at("serial") != short_lived.at("serial"));
    require_ok(cli("cert verify --dir state week.pem", dir), "verify 7d");
    // Both certificates carry the same agent key (the KMS key "agent:agent-7", made once).
    const Run k1 = run_in(dir, "openssl x509 -in short.pem -noout -pubkey");
    const Run k2 = run_in(dir, "openssl x509 -in week.pem -noout -pubkey");
    require_ok(k1, "pubkey 1");
    CHECK_THAT(k1.out, Catch::Contains("BEGIN PUBLIC KEY"));
    CHECK(k1.out == k2.out);
    const Run text = run_in(dir, "openssl x509 -in week.pem -noout -text");
    CHECK_THAT(text.out, Catch::Contains("ecdsa-with-SHA256"));
    CHECK_THAT(text.out, Catch::Contains("prime256v1"));
}

TEST_CASE("cli ca: issuing without an approval fails", "[cli][ca]") {
    TempDir dir;
    require_ok(cli("ca init --dir state", dir), "ca init");
    require_ok(cli("agent register --dir state --agent agent-7 --owner Desk --purpose test "
                   "--by Jane",
                   dir),
               "register");
    require_one_line_error(cli("cert issue --dir state --agent agent-7 --out agent.pem", dir),
                           "agent 'agent-7' has no approved scope");
    CHECK_FALSE(fs::exists(dir / "agent.pem"));
    CHECK(fs::is_empty(dir / "state/certs"));
    // An unregistered agent cannot be approved or issued either.
    write_text(dir / "scope.json", kakunin::test::seed_scope_json);
    require_one_line_error(cli("scope approve --dir state --agent ghost --scope scope.json "
                               "--approver 'Jane Doe'",
                               dir),
                           "unknown agent 'ghost'");
    require_one_line_error(cli("cert issue --dir state --agent ghost --out ghost.pem", dir),
                           "unknown agent 'ghost'");
    CHECK_FALSE(fs::exists(dir / "ghost.pem"));
}

TEST_CASE("cli ca: a changed scope file after approval needs a new approval", "[cli][ca]") {
    TempDir dir;
    set_up_agent(dir);
    const std::string changed =
        kakunin::test::seed_with("\"SOL_EUR\"]", "\"SOL_EUR\", \"ADA_EUR\"]");
    write_text(dir / "scope.json", changed);

    const Run refused =
        cli("cert issue --dir state --agent agent-7 --scope scope.json --out agent.pem", dir);
    require_one_line_error(refused, "is not the scope approved for agent 'agent-7' by Jane Doe");
    CHECK_THAT(refused.err, Catch::Contains("needs a new 'kakunin scope approve'"));
    CHECK_FALSE(fs::exists(dir / "agent.pem"));

    // Without --scope the CA certifies what was approved, not what the file says now.
    require_ok(cli("cert issue --dir state --agent agent-7 --out old.pem", dir), "issue old");
    CHECK(inspect(dir, "old.pem").at("scope") == canonical_scope(kakunin::test::seed_scope_json));

    require_ok(cli("scope approve --dir state --agent agent-7 --scope scope.json "
                   "--approver 'John Smith'",
                   dir),
               "second approval");
    require_ok(cli("cert issue --dir state --agent agent-7 --scope scope.json --out new.pem", dir),
               "issue new");
    const json j = inspect(dir, "new.pem");
    CHECK(j.at("scope") == canonical_scope(changed));
    CHECK(j.at("scope").at("instruments").size() == 4);

    // A scope edited in the state directory behind the approval's back is refused.
    const std::string approval_file = dir / "state/approvals/agent-7.json";
    std::string stored = read_text(approval_file);
    const auto pos = stored.find("ADA_EUR");
    REQUIRE(pos != std::string::npos);
    stored.replace(pos, 7, "XRP_EUR");
    write_text(approval_file, stored);
    require_one_line_error(cli("cert issue --dir state --agent agent-7 --out forged.pem", dir),
                           "does not match its approval's hash");
    CHECK_FALSE(fs::exists(dir / "forged.pem"));
}

TEST_CASE("cli ca: --csr takes only the public key of a request", "[cli][ca]") {
    require_openssl();
    TempDir dir;
    set_up_agent(dir);
    require_ok(run_in(dir,
                      "openssl req -new -newkey ed25519 -nodes -keyout agent.key -subj /CN=root "
                      "-addext basicConstraints=critical,CA:TRUE -out agent.csr"),
               "openssl req");
    require_ok(cli("cert issue --dir state --agent agent-7 --csr agent.csr --out agent.pem", dir),
               "issue --csr");
    const json j = inspect(dir, "agent.pem");
    CHECK(j.at("agent") == "agent-7");
    const Run cert_key = run_in(dir, "openssl x509 -in agent.pem -noout -pubkey");
    const Run req_key = run_in(dir, "openssl req -in agent.csr -noout -pubkey");
    require_ok(cert_key, "cert pubkey");
    require_ok(req_key, "req pubkey");
    CHECK(cert_key.out == req_key.out);
    const Run text = run_in(dir, "openssl x509 -in agent.pem -noout -text");
    CHECK_THAT(text.out, Catch::Contains("CA:FALSE"));
    CHECK(text.out.find("CN = root") == std::string::npos);
    require_ok(cli("cert verify --dir state agent.pem", dir), "verify");

    // Something that is not a request is refused.
    write_text(dir / "garbage.csr",
               "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
               "-----END CERTIFICATE REQUEST-----\n");
    require_one_line_error(
        cli("cert issue --dir state --agent agent-7 --csr garbage.csr --out bad.pem", dir),
        "certificate request");
    CHECK_FALSE(fs::exists(dir / "bad.pem"));
}

TEST_CASE("cli ca: bad inputs give one-line errors naming the problem", "[cli][ca]") {
    TempDir dir;
    const std::string args = "agent register --agent a1 --owner o --purpose p --by b";

    SECTION("state directory") {
        require_one_line_error(cli(args + " --dir missing", dir),
                               "state directory 'missing' does not exist");
        fs::create_directory(dir / "empty");
        require_one_line_error(cli(args + " --dir empty", dir),
                               "'empty' is not a Kakunin CA directory");
        require_one_line_error(cli("cert verify --dir empty x.pem", dir),
                               "'empty' is not a Kakunin CA directory");
        require_ok(cli("ca init --dir state", dir), "ca init");
        require_one_line_error(cli("ca init --dir state", dir), "'state' already holds a CA");
    }

    SECTION("passphrase") {
        require_one_line_error(cli("ca init --dir state", dir, "-u KAKUNIN_KMS_PASSPHRASE"),
                               "KAKUNIN_KMS_PASSPHRASE is not set");
        CHECK_FALSE(fs::exists(dir / "state"));
        require_ok(cli("ca init --dir state", dir), "ca init");
        require_one_line_error(cli(args + " --dir state", dir, "-u KAKUNIN_KMS_PASSPHRASE"),
                               "KAKUNIN_KMS_PASSPHRASE is not set");
        const Run wrong = cli(args + " --dir state", dir, "KAKUNIN_KMS_PASSPHRASE=wrong");
        require_one_line_error(wrong, "wrong KAKUNIN_KMS_PASSPHRASE");
        CHECK_THAT(wrong.err, Catch::Contains("cannot decrypt key file"));
    }

    SECTION("ca init options") {
        require_one_line_error(cli("ca init --dir state --algorithm rsa", dir),
                               "--algorithm: 'rsa' is neither ed25519 nor ecdsa-p256");
        require_one_line_error(cli("ca init --dir state --kms vault", dir),
                               "--kms: 'vault' is neither software nor pkcs11");
        require_one_line_error(cli("ca init --dir state --kms pkcs11 --token t", dir),
                               "--kms pkcs11 needs --pkcs11-module");
        require_one_line_error(cli("ca init --dir state --token t", dir),
                               "--pkcs11-module and --token belong to --kms pkcs11");
        require_one_line_error(
            cli("ca init --dir state --kms pkcs11 --pkcs11-module /nonexistent/p11.so --token t",
                dir, "-u KAKUNIN_PKCS11_PIN"),
            "KAKUNIN_PKCS11_PIN");
        require_one_line_error(
            cli("ca init --dir state --kms pkcs11 --pkcs11-module /nonexistent/p11.so --token t",
                dir, "KAKUNIN_PKCS11_PIN=1234"),
            "cannot load PKCS#11 module '/nonexistent/p11.so'");
        CHECK_FALSE(fs::exists(dir / "state"));
    }

    SECTION("agents and scopes") {
        require_ok(cli("ca init --dir state", dir), "ca init");
        require_one_line_error(
            cli("agent register --dir state --agent 'bad id' --owner o --purpose p --by b", dir),
            "agent id");
        require_ok(cli(args + " --dir state", dir), "register");
        require_one_line_error(cli(args + " --dir state", dir), "agent 'a1' is already registered");
        const std::string approve =
            "scope approve --dir state --agent a1 --approver 'Jane Doe' --scope ";
        require_one_line_error(cli(approve + "nowhere.json", dir), "nowhere.json");
        write_text(dir / "colour.json",
                   kakunin::test::seed_with("\"version\": 1,", "\"version\": 1, \"colour\": 3,"));
        require_one_line_error(cli(approve + "colour.json", dir), "colour");
        write_text(dir / "negative.json", kakunin::test::seed_with("500000.00", "-5"));
        require_one_line_error(cli(approve + "negative.json", dir), "max_transaction");
        write_text(dir / "syntax.json", "{\"version\": 1,\n");
        require_one_line_error(cli(approve + "syntax.json", dir), "syntax.json");
        CHECK(fs::is_empty(dir / "state/approvals"));
    }

    SECTION("certificates") {
        set_up_agent(dir);
        require_one_line_error(
            cli("cert issue --dir state --agent agent-7 --validity 5x --out a.pem", dir),
            "--validity: '5x' has no unit");
        require_one_line_error(
            cli("cert issue --dir state --agent agent-7 --validity 0h --out a.pem", dir),
            "--validity: '0h' must be positive");
        require_one_line_error(
            cli("cert issue --dir state --agent agent-7 --validity 3650d --out a.pem", dir),
            "outlive the CA certificate");
        require_one_line_error(
            cli("cert issue --dir state --agent agent-7 --validity 99999d --out a.pem", dir),
            "--validity: '99999d' is longer than 100 years");
        CHECK_FALSE(fs::exists(dir / "a.pem"));
        require_one_line_error(cli("cert revoke --dir state --serial xyz --reason superseded", dir),
                               "serial");
        write_text(dir / "garbage.pem", "not a certificate\n");
        require_one_line_error(cli("cert verify --dir state garbage.pem", dir),
                               "kakunin: malformed: ");
        require_one_line_error(cli("cert inspect garbage.pem", dir), "garbage.pem");
        require_one_line_error(cli("cert inspect nothing.pem", dir), "nothing.pem");
        // The trust anchor itself is no agent certificate: inspect says why it has no scope.
        const json ca = inspect(dir, "state/ca.pem");
        CHECK(ca.contains("scope_error"));
        CHECK_FALSE(ca.contains("scope"));
        const Run anchor = cli("cert verify --dir state --json state/ca.pem", dir);
        CHECK(json::parse(anchor.out).at("valid") == false);
        require_one_line_error(anchor, "state/ca.pem");
    }
}

TEST_CASE("cli ca: verify fails closed on another CA's certificate and a missing CRL",
          "[cli][ca]") {
    TempDir dir;
    set_up_agent(dir);
    require_ok(cli("cert issue --dir state --agent agent-7 --out agent.pem", dir), "issue");
    require_ok(cli("ca init --dir other", dir), "second CA");
    require_one_line_error(cli("cert verify --dir other agent.pem", dir), "kakunin: wrong_ca: ");
    fs::remove(dir / "state/crl.pem");
    require_one_line_error(cli("cert verify --dir state agent.pem", dir), "kakunin: crl_missing: ");
    // `crl` publishes a fresh one again.
    require_ok(cli("crl --dir state --out crl.pem", dir), "crl");
    CHECK(fs::exists(dir / "state/crl.pem"));
    require_ok(cli("cert verify --dir state agent.pem", dir), "verify");
}

TEST_CASE("cli ca: the whole flow on a SoftHSM2 token with --kms pkcs11", "[cli][ca][pkcs11]") {
    auto& hsm = kakunin_test::SoftHsm::instance();
    const std::string token = hsm.new_token("cli");
    const std::string pin_env =
        std::string("KAKUNIN_PKCS11_PIN=") + shell_quote(kakunin_test::k_user_pin);
    TempDir dir;
    // ECDSA P-256: SoftHSM2's EdDSA signing leaks inside the module under LeakSanitizer.
    set_up_agent(dir,
                 "--algorithm ecdsa-p256 --kms pkcs11 --pkcs11-module " +
                     shell_quote(hsm.module()) + " --token " + shell_quote(token),
                 pin_env);
    CHECK_FALSE(fs::exists(dir / "state/keys"));
    const std::string config = read_text(dir / "state/kms.json");
    const json kms = json::parse(config);
    CHECK(kms.at("backend") == "pkcs11");
    CHECK(kms.at("token") == token);
    CHECK(kms.at("pkcs11_module") == hsm.module());
    CHECK(config.find(kakunin_test::k_user_pin) == std::string::npos);

    issue_verify_revoke(dir, pin_env);

    // The keys the command line made are on the token, sensitive and never extractable.
    for (const char* label : {"ca", "approver:Jane Doe", "agent:agent-7"}) {
        INFO(label);
        const auto view = kakunin_test::raw_inspect_private_key(hsm.module(), token,
                                                                kakunin_test::k_user_pin, label);
        CHECK(view.found);
        CHECK(view.sensitive == CK_TRUE);
        CHECK(view.extractable == CK_FALSE);
        CHECK(view.value_rv != CKR_OK);
    }

    // A token that is not there leaves no state directory behind.
    require_one_line_error(cli("ca init --dir other --kms pkcs11 --pkcs11-module " +
                                   shell_quote(hsm.module()) + " --token no-such-token",
                               dir, pin_env),
                           "no-such-token");
    CHECK_FALSE(fs::exists(dir / "other"));

    const std::string args = "agent register --dir state --agent a2 --owner o --purpose p --by b";
    require_one_line_error(cli(args, dir, "-u KAKUNIN_PKCS11_PIN"), "KAKUNIN_PKCS11_PIN");
    require_one_line_error(cli(args, dir, "KAKUNIN_PKCS11_PIN=0000"), "CKR_PIN_INCORRECT");
    require_ok(cli(args, dir, pin_env), "register with the right PIN");
}

TEST_CASE("cli replay --dir --agent: a Guard on a simulation certificate from the approved scope",
          "[cli][replay]") {
    TempDir dir;
    set_up_agent(dir);
    // Monday before, in and after trading hours, an instrument outside the scope, then Wednesday
    // (beyond a 24 h certificate and a 1 h CRL: the simulation certificate covers the whole span).
    write_text(dir / "orders.csv",
               "ts,instrument,counterparty,side,quantity,price,region\n"
               "2024-01-08T06:59:59Z,BTC_EUR,exchange_a,BUY,1,40000.00,eu-west-1\n"
               "2024-01-08T07:00:00Z,BTC_EUR,exchange_a,BUY,1,40000.00,eu-west-1\n"
               "2024-01-08T07:00:01Z,ETH_EUR,exchange_b,SELL,2,2000.00,eu-central-1\n"
               "2024-01-08T07:00:02Z,XRP_EUR,exchange_a,BUY,1,1.00,eu-west-1\n"
               "2024-01-08T20:00:00Z,BTC_EUR,exchange_a,BUY,1,40000.00,eu-west-1\n"
               "2024-01-10T12:00:00Z,BTC_EUR,exchange_a,BUY,1,40100.00,eu-west-1\n");
    const Run sim =
        cli("replay --dir state --agent agent-7 --orders orders.csv --decisions-out d.jsonl --json",
            dir);
    require_ok(sim, "replay --dir");
    json summary = json::parse(sim.out);
    const json cert = summary.at("certificate");
    CHECK(cert.at("agent") == "agent-7");
    CHECK(cert.at("simulation") == true);
    CHECK_THAT(cert.at("subject").get<std::string>(), Catch::Contains("simulation"));
    CHECK(cert.at("not_before_ns") == kakunin::utc(2024, 1, 8, 6, 59, 59));
    CHECK(cert.at("not_after_ns").get<std::int64_t>() >= kakunin::utc(2024, 1, 10, 12));
    CHECK(cert.at("approved_by") == "Jane Doe");
    CHECK(summary.at("orders") == 6);
    CHECK(summary.at("rejected").at("outside_trading_hours") == 2);
    CHECK(summary.at("rejected").at("instrument_not_allowed") == 1);
    const std::string decisions = read_text(dir / "d.jsonl");
    CHECK(std::count(decisions.begin(), decisions.end(), '\n') == 6);
    CHECK(decisions.find("certificate_expired") == std::string::npos);
    CHECK(decisions.find("revocation_status_stale") == std::string::npos);

    // The limits alone decide the same for the same scope.
    const Run limits = cli("replay --scope scope.json --orders orders.csv --json", dir);
    require_ok(limits, "replay --scope");
    summary.erase("certificate");
    summary.erase("audit_log");
    CHECK(summary.at("incidents").empty());  // no baseline: nothing scored, no incident
    summary.erase("incidents");
    CHECK(json::parse(limits.out) == summary);

    // The simulation enforces the approved scope, not the file: narrow the approval to BTC_EUR.
    write_text(dir / "btc.json",
               R"({"version": 1, "max_transaction": {"currency": "EUR", "amount": "500000.00"},
                   "instruments": ["BTC_EUR"], "counterparties": ["exchange_a", "exchange_b"],
                   "trading_hours": [{"days": ["Mon", "Tue", "Wed", "Thu", "Fri"],
                                      "from": "07:00", "to": "20:00"}],
                   "regions": ["eu-west-1", "eu-central-1"]})");
    require_ok(cli("scope approve --dir state --agent agent-7 --scope btc.json --approver 'John "
                   "Smith'",
                   dir),
               "narrow approval");
    // A log of its own: the default log has the first run's day (a run cannot go back in time).
    const Run narrowed = cli(
        "replay --dir state --agent agent-7 --orders orders.csv --json --audit-out narrowed.jsonl",
        dir);
    require_ok(narrowed, "replay narrowed");
    const json n = json::parse(narrowed.out);
    CHECK(n.at("rejected") == json{{"outside_trading_hours", 2}, {"instrument_not_allowed", 2}});
    CHECK(n.at("allowed") == 2);
    CHECK(n.at("certificate").at("approved_by") == "John Smith");
    // No certificate for the simulation was added to the CA's own records.
    int issued = 0;
    for (const auto& e : fs::directory_iterator(dir / "state/certs")) issued += e.is_regular_file();
    CHECK(issued == 0);

    const Run table =
        cli("replay --dir state --agent agent-7 --orders orders.csv --audit-out table.jsonl", dir);
    require_ok(table, "replay table");
    CHECK_THAT(table.out, Catch::Contains("simulation certificate for agent 'agent-7'"));
    CHECK_THAT(table.out, Catch::Contains("instrument_not_allowed"));
}

TEST_CASE("cli replay --dir --agent: refusals", "[cli][replay]") {
    TempDir dir;
    write_text(dir / "orders.csv",
               "ts,instrument,counterparty,side,quantity,price,region\n"
               "2024-01-08T07:00:00Z,BTC_EUR,exchange_a,BUY,1,40000.00,eu-west-1\n");
    write_text(dir / "empty.csv", "ts,instrument,counterparty,side,quantity,price,region\n");
    write_text(dir / "scope.json", kakunin::test::seed_scope_json);
    require_one_line_error(cli("replay --dir state --agent agent-7 --orders orders.csv", dir),
                           "state directory 'state' does not exist");
    require_ok(cli("ca init --dir state", dir), "ca init");
    require_one_line_error(cli("replay --dir state --agent agent-7 --orders orders.csv", dir),
                           "unknown agent 'agent-7'");
    require_ok(cli("agent register --dir state --agent agent-7 --owner o --purpose p --by b", dir),
               "register");
    require_one_line_error(cli("replay --dir state --agent agent-7 --orders orders.csv", dir),
                           "agent 'agent-7' has no approved scope");
    require_ok(
        cli("scope approve --dir state --agent agent-7 --scope scope.json --approver J", dir),
        "approve");
    require_one_line_error(cli("replay --dir state --agent agent-7 --orders empty.csv", dir),
                           "no orders");
    require_one_line_error(cli("replay --dir state --agent agent-7 --orders orders.csv", dir,
                               "-u KAKUNIN_KMS_PASSPHRASE"),
                           "KAKUNIN_KMS_PASSPHRASE is not set");
    require_one_line_error(
        cli("replay --scope scope.json --dir state --agent agent-7 --orders orders.csv", dir),
        "either --scope or --dir");
    require_one_line_error(cli("replay --dir state --orders orders.csv", dir),
                           "--dir needs --agent");
    require_one_line_error(cli("replay --orders orders.csv", dir), "give --scope");
    require_ok(cli("replay --dir state --agent agent-7 --orders orders.csv", dir), "replay");
}

TEST_CASE(
    "cli replay --dir writes a signed audit log and audit verify accepts it and catches a change",
    "[cli][replay][audit]") {
    TempDir dir;
    set_up_agent(dir);
    write_text(dir / "orders.csv",
               "ts,instrument,counterparty,side,quantity,price,region,reasoning\n"
               "2024-01-08T07:00:00Z,BTC_EUR,exchange_a,BUY,1,40000.00,eu-west-1,first\n"
               "2024-01-08T07:00:01Z,BTC_EUR,exchange_a,BUY,1,40000.00,eu-west-1,second\n"
               "2024-01-08T07:00:02Z,BTC_EUR,exchange_c,BUY,1,40000.00,eu-west-1,wrong venue\n");
    const Run sim = cli(
        "replay --dir state --agent agent-7 --orders orders.csv --audit-out a.jsonl --json", dir);
    require_ok(sim, "replay --audit-out");
    CHECK(json::parse(sim.out).at("audit_log") == "a.jsonl");
    const std::string log = read_text(dir / "a.jsonl");
    CHECK(std::count(log.begin(), log.end(), '\n') >= 4);  // 3 records and a checkpoint at least
    CHECK_THAT(log, Catch::Contains("\"log_id\":\"agent-7.replay\""));
    CHECK_THAT(log, Catch::Contains("\"reasoning\":\"wrong venue\""));

    const Run ok =
        cli("audit verify --log a.jsonl --certs a.jsonl.certs --ca state/ca.pem --json", dir);
    INFO(ok.err);
    // The simulation certificate comes from the simulation CA, not the state's production CA.
    require_one_line_error(ok, "not issued by state/ca.pem");
    const Run plain = cli("audit verify --log a.jsonl --certs a.jsonl.certs --json", dir);
    require_ok(plain, "audit verify");
    const json v = json::parse(plain.out);
    CHECK(v.at("ok") == true);
    CHECK(v.at("records") == 3);
    CHECK(v.at("signed_records") == 3);

    std::string tampered = log;
    const std::string needle = "\"reasoning\":\"second\"";
    tampered.replace(tampered.find(needle), needle.size(), "\"reasoning\":\"sekond\"");
    write_text(dir / "a.jsonl", tampered);
    require_one_line_error(cli("audit verify --log a.jsonl --certs a.jsonl.certs", dir),
                           "bad_record_signature: line 2: seq 1");
    require_one_line_error(cli("audit verify --log a.jsonl", dir), "unknown_certificate");
}

TEST_CASE(
    "cli ca: every step is a signed record in STATE/audit/ca.jsonl and audit verify --ca "
    "checks it",
    "[cli][ca][audit]") {
    TempDir dir;
    set_up_agent(dir);
    const Run issued = cli("cert issue --dir state --agent agent-7 --out agent.pem --json", dir);
    require_ok(issued, "cert issue");
    const std::string serial = json::parse(issued.out).at("serial").get<std::string>();
    require_ok(cli("cert revoke --dir state --serial " + serial +
                       " --reason 'keyCompromise: anomaly score 0.91'",
                   dir),
               "cert revoke");
    require_ok(cli("cert revoke --dir state --serial " + serial + " --reason superseded", dir),
               "second revoke (a no-op, no record)");

    // The records, in the order the five commands ran, each followed by a checkpoint.
    const std::string log = read_text(dir / "state/audit/ca.jsonl");
    std::vector<json> lines;
    for (std::size_t b = 0, e; (e = log.find('\n', b)) != std::string::npos; b = e + 1)
        lines.push_back(json::parse(log.substr(b, e - b)));
    std::vector<std::string> kinds;
    for (const json& l : lines)
        kinds.push_back(l.at("kind") == "record" ? l.at("event").get<std::string>() : "|");
    CHECK(kinds == std::vector<std::string>{"ca.initialised", "crl.issued", "|", "agent.registered",
                                            "|", "scope.approved", "|", "certificate.issued", "|",
                                            "certificate.revoked", "crl.issued", "|"});
    const json anchor = inspect(dir, "state/ca.pem");
    for (const json& l : lines) {
        CHECK(l.at("log_id") == "ca");
        CHECK(l.value("cert_fp", l.value("key_fp", "")) == anchor.at("fingerprint"));
    }
    CHECK(lines.at(3).at("payload").at("registration").at("created_by") == "Jane Roe");
    CHECK(lines.at(5).at("payload").at("approval").at("approver") == "Jane Doe");
    CHECK(lines.at(5).at("payload").at("scope") == canonical_scope(kakunin::test::seed_scope_json));
    CHECK(lines.at(7).at("payload").at("serial") == serial);
    CHECK(lines.at(7).at("payload").at("fingerprint") ==
          inspect(dir, "agent.pem").at("fingerprint"));
    CHECK(lines.at(9).at("payload").at("reason_code") == "keyCompromise");

    const Run ok = cli("audit verify --log state/audit/ca.jsonl --ca state/ca.pem --json", dir);
    require_ok(ok, "audit verify the CA log");
    const json v = json::parse(ok.out);
    CHECK(v.at("ok") == true);
    CHECK(v.at("log_id") == "ca");
    CHECK(v.at("records") == 7);
    CHECK(v.at("signed_records") == 7);
    CHECK(v.at("checkpoints") == 5);
    // With the agent certificates too: --ca checks they were issued by it (the copy of the CA
    // certificate among them is skipped).
    fs::copy_file(dir / "state/ca.pem", dir / "state/certs/ca.pem");
    require_ok(
        cli("audit verify --log state/audit/ca.jsonl --certs state/certs --ca state/ca.pem", dir),
        "audit verify --certs --ca");
    fs::remove(dir / "state/certs/ca.pem");
    // Without the CA certificate the signatures cannot be checked.
    require_one_line_error(cli("audit verify --log state/audit/ca.jsonl", dir),
                           "unknown_certificate");

    // An altered record is caught, naming its seq; so is a record taken out.
    std::string altered = log;
    const std::string purpose = "\"purpose\":\"BTC market making\"";
    REQUIRE(altered.find(purpose) != std::string::npos);
    altered.replace(altered.find(purpose), purpose.size(), "\"purpose\":\"BTC market taking\"");
    write_text(dir / "altered.jsonl", altered);
    require_one_line_error(cli("audit verify --log altered.jsonl --ca state/ca.pem", dir),
                           "bad_record_signature: line 4: seq 2");
    std::string cut = log;
    const std::size_t line6 = [&] {
        std::size_t p = 0;
        for (int i = 0; i < 5; ++i) p = cut.find('\n', p) + 1;
        return p;
    }();
    cut.erase(line6, cut.find('\n', line6) + 1 - line6);  // scope.approved gone
    write_text(dir / "cut.jsonl", cut);
    require_one_line_error(cli("audit verify --log cut.jsonl --ca state/ca.pem", dir),
                           "seq 3 onwards missing");

    // The next process carries on with the same log.
    require_ok(cli("crl --dir state --out crl.pem", dir), "crl");  // fresh: no new CRL record
    require_ok(cli("agent register --dir state --agent agent-8 --owner o --purpose p --by b", dir),
               "register agent-8");
    const Run again = cli("audit verify --log state/audit/ca.jsonl --ca state/ca.pem --json", dir);
    require_ok(again, "audit verify after another command");
    CHECK(json::parse(again.out).at("records") == 8);
}
