// Audit records, canonical bytes, checkpoints, sinks and the log writer.
#include <catch2/catch.hpp>

#include <sys/resource.h>
#include <unistd.h>

#include <csignal>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "audit/canonical_scan.hpp"
#include "audit/json.hpp"
#include "audit_test_support.hpp"
#include "kakunin/audit.hpp"
#include "kakunin/clock.hpp"

using namespace kakunin;
using kakunin::test::AuditTestKms;

namespace {

std::string error_of(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const Error& e) {
        return std::string(to_string(e.category())) + ": " + e.what();
    }
    return "no error";
}

struct TempDir {
    std::filesystem::path path;
    TempDir() {
        std::string tmpl =
            (std::filesystem::temp_directory_path() / "kakunin-audit-XXXXXX").string();
        path = ::mkdtemp(tmpl.data());
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::string file(const std::string& name) const { return (path / name).string(); }
};

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void append_raw(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::app);
    out << bytes;
}

std::vector<std::string> split_lines(const std::string& text) {
    std::vector<std::string> out;
    std::size_t start = 0;
    for (std::size_t pos = text.find('\n'); pos != std::string::npos;
         pos = text.find('\n', start)) {
        out.push_back(text.substr(start, pos - start));
        start = pos + 1;
    }
    return out;
}

std::string payload(int i) {
    return R"({"order":{"instrument":"BTC_EUR","price":"42000.00","qty":"1.5"},"decision":"allow","score_ppm":)" +
           std::to_string(1000 + i) + "}";
}

/// The test identities' certificates name their Kms key label ("agent:ID"), not the agent id:
/// bound to the agent explicitly, as the verifier binds a log's signers to its agent.
AuditCertificates certs_for(const std::vector<const test::TestIdentity*>& ids) {
    AuditCertificates c;
    for (const auto* id : ids) {
        const std::string& label = id->key.label;
        if (label.rfind("agent:", 0) == 0)
            c.add_der(id->cert_der, label.substr(6));
        else
            c.add_der(id->cert_der);
    }
    return c;
}

}  // namespace

TEST_CASE("audit: canonical JSON is sorted, compact and exact", "[audit][canonical]") {
    CHECK(canonical_json(R"( { "b" : 1 , "a" : [ true , null , "x" ] } )") ==
          R"({"a":[true,null,"x"],"b":1})");
    CHECK(canonical_json(R"({"z":{"y":2,"x":{"b":0,"a":-7}}})") ==
          R"({"z":{"x":{"a":-7,"b":0},"y":2}})");
    // Integers are written exactly, including nanosecond timestamps beyond 2^53.
    CHECK(canonical_json(
              R"({"t":1700000000123456789,"u":18446744073709551615,"n":-9223372036854775808})") ==
          R"({"n":-9223372036854775808,"t":1700000000123456789,"u":18446744073709551615})");
    // RFC 8785 string escaping: short escapes, \u00xx lowercase for other controls, the rest raw.
    CHECK(canonical_json(R"({"s":"\u0041\/\n\t\u001f\u00e9\u2028"})") ==
          "{\"s\":\"A/\\n\\t\\u001f\xc3\xa9\xe2\x80\xa8\"}");
    CHECK(canonical_json("[]") == "[]");
}

TEST_CASE("audit: canonical JSON refuses what has no canonical form here", "[audit][canonical]") {
    CHECK_THAT(error_of([] { canonical_json(R"({"a":{"b":[1,2.5]}})"); }),
               Catch::Contains("invalid_input") && Catch::Contains("$.a.b[1]") &&
                   Catch::Contains("floating-point"));
    CHECK_THAT(error_of([] { canonical_json(R"({"x":1.0})"); }), Catch::Contains("$.x"));
    CHECK_THAT(error_of([] { canonical_json(R"({"x":1e3})"); }), Catch::Contains("$.x"));
    CHECK_THAT(error_of([] { canonical_json(R"({"x":18446744073709551616})"); }),
               Catch::Contains("$.x"));
    CHECK_THAT(error_of([] { canonical_json("{\"a\":{\"\xc3\xa9t\xc3\xa9\":1}}"); }),
               Catch::Contains("invalid_input") && Catch::Contains("not ASCII"));
    CHECK_THAT(error_of([] { canonical_json(R"({"a":1,"b":{"c":1,"c":2}})"); }),
               Catch::Contains("duplicate member name \"c\""));
    CHECK_THAT(error_of([] { canonical_json(R"({"a":)"); }), Catch::Contains("malformed JSON"));
    CHECK_THAT(error_of([] { canonical_json("{\"a\":\"\xff\"}"); }), Catch::Contains("malformed"));
}

TEST_CASE("audit: record canonical bytes, leaf hash and line", "[audit][record]") {
    AuditRecord r = make_audit_record(41, 1700000000123456789, "agent-7", "agent-7", "sha256:9f2c",
                                      audit_event::order_allowed,
                                      R"({"score_ppm":120345, "decision":"allow", "reasons":[]})");
    const std::string expected =
        R"({"agent":"agent-7","cert_fp":"sha256:9f2c","event":"order.allowed","kind":"record",)"
        R"("log_id":"agent-7","payload":{"decision":"allow","reasons":[],"score_ppm":120345},)"
        R"("seq":41,"ts_ns":1700000000123456789})";
    CHECK(r.canonical == expected);
    CHECK(r.line() == expected);
    CHECK(r.leaf_hash() == sha256(std::string(1, '\0') + expected));
    CHECK(r.seq == 41);
    CHECK(r.ts_ns == 1700000000123456789);
    CHECK(r.event == "order.allowed");

    r.sig = "AAAA";
    CHECK(r.line() ==
          R"({"agent":"agent-7","cert_fp":"sha256:9f2c","event":"order.allowed","kind":"record",)"
          R"("log_id":"agent-7","payload":{"decision":"allow","reasons":[],"score_ppm":120345},)"
          R"("seq":41,"sig":"AAAA","ts_ns":1700000000123456789})");
    const AuditRecord back = parse_audit_record(r.line());
    CHECK(back.canonical == r.canonical);
    CHECK(back.sig == "AAAA");
    CHECK(back.seq == 41);
    CHECK(back.log_id == "agent-7");

    // Names that need escaping are escaped once and round-trip.
    AuditRecord q =
        make_audit_record(0, -5, "log \"q\"", "a\\b", "fp", audit_event::guard_halted, "{}");
    CHECK_THAT(q.canonical, Catch::Contains(R"("agent":"a\\b")") &&
                                Catch::Contains(R"("log_id":"log \"q\"")") &&
                                Catch::Contains(R"("ts_ns":-5})"));
    CHECK(parse_audit_record(q.line()).log_id == "log \"q\"");
}

TEST_CASE("audit: events and payloads are validated", "[audit][record]") {
    CHECK(is_valid_audit_event("order.warned"));
    CHECK(is_valid_audit_event("log.truncated_tail"));
    CHECK(is_valid_audit_event("incident.opened"));
    CHECK(is_valid_audit_event("incident.review_due"));
    CHECK_FALSE(is_valid_audit_event("incident."));
    CHECK_FALSE(is_valid_audit_event("incident.Opened"));
    CHECK_FALSE(is_valid_audit_event("order.deleted"));
    CHECK_FALSE(is_valid_audit_event(""));
    CHECK_THAT(error_of([] { make_audit_record(0, 0, "l", "a", "f", "order.edited", "{}"); }),
               Catch::Contains("unknown event \"order.edited\""));
    CHECK_THAT(error_of([] { make_audit_record(0, 0, "l", "a", "f", "order.allowed", "[1]"); }),
               Catch::Contains("not a JSON object"));
    CHECK_THAT(error_of([] {
                   make_audit_record(0, 0, "l", "a", "f", "order.allowed", R"({"score":0.5})");
               }),
               Catch::Contains("payload.score") && Catch::Contains("floating-point"));
    CHECK_THAT(error_of([] { make_audit_record(0, 0, "", "a", "f", "order.allowed", "{}"); }),
               Catch::Contains("empty log_id"));
}

TEST_CASE("audit: record lines are parsed strictly", "[audit][record]") {
    const std::string good = make_audit_record(3, 10, "l", "a", "f", "order.rejected",
                                               R"({"reasons":["scope.instrument"]})")
                                 .line();
    CHECK_NOTHROW(parse_audit_record(good));
    std::string spaced = good;
    spaced.insert(1, " ");
    CHECK_THAT(error_of([&] { parse_audit_record(spaced); }), Catch::Contains("canonical form"));
    std::string extra = good;
    extra.insert(1, R"("aaa":1,)");
    CHECK_THAT(error_of([&] { parse_audit_record(extra); }),
               Catch::Contains("unknown member \"aaa\""));
    std::string no_payload =
        R"({"agent":"a","cert_fp":"f","event":"order.rejected","kind":"record","log_id":"l","seq":3,"ts_ns":10})";
    CHECK_THAT(error_of([&] { parse_audit_record(no_payload); }),
               Catch::Contains("missing member \"payload\""));
    std::string neg_seq = good;
    neg_seq.replace(neg_seq.find("\"seq\":3"), 7, "\"seq\":-3");
    CHECK_THAT(error_of([&] { parse_audit_record(neg_seq); }), Catch::Contains("\"seq\""));
    std::string float_payload = good;
    float_payload.replace(float_payload.find("{\"reasons\""), 1, "{\"f\":1.5,");
    CHECK_THAT(error_of([&] { parse_audit_record(float_payload); }),
               Catch::Contains("payload.f") && Catch::Contains("floating-point"));
    CHECK_THAT(error_of([] { parse_audit_record("not json"); }), Catch::Contains("not valid JSON"));
    CHECK_THAT(error_of([] { parse_audit_record(R"({"kind":"other"})"); }),
               Catch::Contains("unknown kind"));
}

TEST_CASE("audit: checkpoints are signed over the documented text", "[audit][checkpoint]") {
    AuditTestKms kms;
    for (KeyAlgorithm alg : {KeyAlgorithm::ed25519, KeyAlgorithm::ecdsa_p256}) {
        INFO(to_string(alg));
        const auto id = test::make_identity(kms, std::string("log-key-") + to_string(alg), alg);
        MerkleTree t;
        t.append(merkle_leaf_hash("x"));
        const AuditCheckpoint c =
            sign_audit_checkpoint(id.signer(kms), "agent-7", 1, t.root(), 1234);
        CHECK(c.signed_text() ==
              "kakunin-checkpoint/v1\nagent-7\n1\n" + to_hex(t.root()) + "\n1234\n");
        CHECK(c.key_fp == id.fp);
        CHECK(c.line() ==
              R"({"key_fp":")" + id.fp + R"(","kind":"checkpoint","log_id":"agent-7","root":")" +
                  to_hex(t.root()) + R"(","sig":")" + base64_encode(c.sig.data(), c.sig.size()) +
                  R"(","size":1,"ts_ns":1234})");
        const AuditCheckpoint back = parse_audit_checkpoint(c.line());
        CHECK(back.root == c.root);
        CHECK(back.sig == c.sig);
        CHECK(back.size == 1);
        const auto certs = certs_for({&id});
        const std::string text = back.signed_text();
        CHECK(certs.verify(id.fp, reinterpret_cast<const std::uint8_t*>(text.data()), text.size(),
                           back.sig.data(), back.sig.size()));
        const std::string other =
            "kakunin-checkpoint/v1\nagent-7\n2\n" + to_hex(t.root()) + "\n1234\n";
        CHECK_FALSE(certs.verify(id.fp, reinterpret_cast<const std::uint8_t*>(other.data()),
                                 other.size(), back.sig.data(), back.sig.size()));
        // The fingerprint is SHA-256 over the certificate DER.
        CHECK(id.fp == "sha256:" + to_hex(sha256(id.cert_der.data(), id.cert_der.size())));
    }
}

TEST_CASE("audit: base64 is strict", "[audit]") {
    const std::uint8_t bytes[] = {0xfb, 0xff, 0x00, 0x10};
    CHECK(base64_encode(bytes, 4) == "+/8AEA==");
    CHECK(base64_decode("+/8AEA==") == std::vector<std::uint8_t>(bytes, bytes + 4));
    CHECK_THROWS_AS(base64_decode("+/8AEA="), Error);
    CHECK_THROWS_AS(base64_decode("+/8A EA=="), Error);
    CHECK_THROWS_AS(base64_decode("+/8AEB=="), Error);  // non-zero padding bits
}

TEST_CASE("audit: memory sink", "[audit][sink]") {
    MemoryAuditSink sink;
    sink.append(std::vector<std::string>{"{\"a\":1}", "{\"b\":2}"});
    sink.append(std::string_view("{\"c\":3}"));
    sink.flush();
    CHECK(sink.lines() == std::vector<std::string>{"{\"a\":1}", "{\"b\":2}", "{\"c\":3}"});
    CHECK(sink.flushes() == 1);
    std::vector<std::string> seen;
    sink.for_each_line([&](std::string_view l) { seen.emplace_back(l); });
    CHECK(seen == sink.lines());
    CHECK_FALSE(sink.recovery().tail_cut);
}

namespace {

/// Record lines of log "a" (unsigned), as the file sink expects to hold.
std::string record_line(std::uint64_t seq) {
    return make_audit_record(seq, utc(2024, 1, 8) + static_cast<TimeNs>(seq), "a", "a", "sha256:00",
                             audit_event::order_allowed, payload(static_cast<int>(seq)))
        .line();
}

}  // namespace

TEST_CASE("audit: file sink writes JSON Lines and reads them back", "[audit][sink]") {
    TempDir dir;
    const std::string path = dir.file("sub/agent.jsonl");
    const std::string a = record_line(0), b = record_line(1), c = record_line(2);
    {
        FileAuditSink sink(path);
        CHECK(sink.name() == "file:" + path);
        sink.append(std::vector<std::string>{a, b});
        sink.append(std::string_view(c));
        CHECK_THROWS_AS(sink.append(std::string_view("{\"d\":\n4}")), Error);
        sink.flush();
    }
    CHECK(read_file(path) == a + "\n" + b + "\n" + c + "\n");
    FileAuditSink again(path);
    CHECK_FALSE(again.recovery().tail_cut);
    std::vector<std::string> seen;
    again.for_each_line([&](std::string_view l) { seen.emplace_back(l); });
    CHECK(seen == std::vector<std::string>{a, b, c});
}

TEST_CASE("audit: file sink cuts a torn last line and reports it", "[audit][sink]") {
    TempDir dir;
    const std::string path = dir.file("agent.jsonl");
    const std::string a = record_line(0), b = record_line(1), c = record_line(2);
    const std::string complete = a + "\n" + b + "\n";
    {
        FileAuditSink sink(path, FileAuditSinkOptions{false});
        sink.append(std::vector<std::string>{a, b});
        sink.flush();
    }
    SECTION("no trailing newline") {
        append_raw(path, c.substr(0, 5));
        FileAuditSink sink(path);
        CHECK(sink.recovery().tail_cut);
        CHECK(sink.recovery().cut_offset == complete.size());
        CHECK(sink.recovery().cut_bytes == 5);
        CHECK(sink.recovery().reason == "no trailing newline");
        CHECK(read_file(path) == complete);
    }
    SECTION("a complete record without its newline is still torn") {
        append_raw(path, c);
        FileAuditSink sink(path);
        CHECK(sink.recovery().tail_cut);
        CHECK(read_file(path) == complete);
    }
    SECTION("zeros left by a crash, without a newline, are torn") {
        append_raw(path, std::string("{\"c\"\0\0\0", 7));
        FileAuditSink sink(path);
        CHECK(sink.recovery().tail_cut);
        CHECK(sink.recovery().cut_bytes == 7);
        CHECK(read_file(path) == complete);
        sink.append(std::string_view(c));
        CHECK(read_file(path) == complete + c + "\n");
    }
    SECTION("a complete last line is never cut: a torn write does not end in a newline") {
        append_raw(path, std::string("{\"c\"\0\0\0\n", 8));
        FileAuditSink sink(path);
        CHECK_FALSE(sink.recovery().tail_cut);
        CHECK(read_file(path) == complete + std::string("{\"c\"\0\0\0\n", 8));
    }
    SECTION("a file holding only a torn record becomes empty") {
        const std::string p2 = dir.file("torn-only.jsonl");
        append_raw(p2, a.substr(0, 20));
        FileAuditSink sink(p2);
        CHECK(sink.recovery().tail_cut);
        CHECK(sink.recovery().cut_offset == 0);
        CHECK(read_file(p2).empty());
    }
}

TEST_CASE("audit: writer assigns seq, time, checkpoints and signatures", "[audit][writer]") {
    AuditTestKms kms;
    const auto agent = test::make_identity(kms, "agent:agent-7");
    ManualClock clock(utc(2024, 1, 8, 7, 0, 0));
    MemoryAuditSink sink;
    AuditWriterOptions opts;
    opts.log_id = "agent-7";
    opts.checkpoint_every = 3;
    AuditLogWriter log(sink, clock, agent.signer(kms), opts, agent.signer(kms));
    for (int i = 0; i < 7; ++i) {
        CHECK(log.append(audit_event::order_allowed, payload(i)) == static_cast<std::uint64_t>(i));
        clock.advance(std::chrono::milliseconds(1));
    }
    CHECK(log.size() == 7);
    CHECK(log.durable_size() == 0);
    CHECK(log.pending_lines() == 9);  // 7 records + checkpoints at 3 and 6
    CHECK(sink.size() == 0);
    log.flush();
    CHECK(log.durable_size() == 7);
    CHECK(log.checkpointed_size() == 6);
    log.close();
    CHECK(log.checkpointed_size() == 7);
    CHECK_THAT(error_of([&] { log.append(audit_event::order_allowed, "{}"); }),
               Catch::Contains("invalid_state"));

    const auto lines = sink.lines();
    REQUIRE(lines.size() == 10);
    const AuditRecord r0 = parse_audit_record(lines[0]);
    CHECK(r0.seq == 0);
    CHECK(r0.ts_ns == utc(2024, 1, 8, 7, 0, 0));
    CHECK_FALSE(r0.sig.empty());
    CHECK_THAT(r0.canonical, Catch::Contains("\"cert_fp\":\"" + agent.fp + "\""));
    const AuditCheckpoint c3 = parse_audit_checkpoint(lines[3]);
    CHECK(c3.size == 3);
    MerkleTree tree;  // rebuilt from the lines, as an exporter does
    for (const auto& l : lines) {
        if (l.find("\"kind\":\"record\"") != std::string::npos) {
            tree.append(parse_audit_record(l).leaf_hash());
        }
    }
    CHECK(tree.size() == 7);
    CHECK(log.root() == tree.root());
    CHECK(c3.root == tree.root(3));
    CHECK(parse_audit_checkpoint(lines[9]).size == 7);
    CHECK(parse_audit_checkpoint(lines[9]).root == tree.root());
    CHECK(parse_audit_record(lines[8]).seq == 6);

    const auto certs = certs_for({&agent});
    const AuditVerifyResult v = verify_audit_lines(lines, certs);
    INFO(v.message);
    CHECK(v.ok);
    CHECK(v.records == 7);
    CHECK(v.signed_records == 7);
    CHECK(v.checkpoints == 3);
    CHECK(v.covered == 7);

    // Inclusion of one record in the final checkpoint, as an auditor would check it.
    const AuditCheckpoint last = parse_audit_checkpoint(lines[9]);
    const auto proof = tree.inclusion_proof(4, 7);
    CHECK(verify_inclusion(4, 7, parse_audit_record(lines[5]).leaf_hash(), proof, last.root));
    CHECK(verify_consistency(3, 7, c3.root, last.root, tree.consistency_proof(3, 7)));
}

TEST_CASE("audit: writer rejects bad input without using a seq", "[audit][writer]") {
    AuditTestKms kms;
    const auto agent = test::make_identity(kms, "agent:a");
    const auto other = test::make_identity(kms, "agent:b");
    ManualClock clock(1);
    MemoryAuditSink sink;
    AuditLogWriter log(sink, clock, agent.signer(kms), AuditWriterOptions{"a", "", "", 0});
    CHECK_THROWS_AS(log.append("order.unknown", "{}"), Error);
    CHECK_THROWS_AS(log.append(audit_event::order_allowed, R"({"x":0.1})"), Error);
    CHECK_THROWS_AS(log.append(audit_event::order_allowed, R"("text")"), Error);
    CHECK(log.append(audit_event::order_allowed, "{}") == 0);
    CHECK(log.checkpoint().size == 1);
    CHECK(log.checkpointed_size() == 1);
    CHECK_THROWS_AS(AuditLogWriter(sink, clock, agent.signer(kms), AuditWriterOptions{}), Error);
    // A record signer must be the key of the records' certificate.
    MemoryAuditSink sink2;
    AuditWriterOptions o{"a", "", agent.fp, 0};
    CHECK_THAT(
        error_of([&] { AuditLogWriter w(sink2, clock, agent.signer(kms), o, other.signer(kms)); }),
        Catch::Contains("does not match"));
    MemoryAuditSink empty;
    AuditLogWriter e(empty, clock, agent.signer(kms), AuditWriterOptions{"e", "", "", 0});
    CHECK_THAT(error_of([&] { e.checkpoint(); }), Catch::Contains("invalid_state"));
}

TEST_CASE("audit: a failing sink keeps the batch and never duplicates it", "[audit][writer]") {
    AuditTestKms kms;
    const auto agent = test::make_identity(kms, "agent:a");
    ManualClock clock(1);
    test::FlakyAuditSink sink;
    AuditLogWriter log(sink, clock, agent.signer(kms), AuditWriterOptions{"a", "", "", 0});
    log.append(audit_event::order_allowed, payload(0));
    log.flush();
    CHECK(log.durable_size() == 1);
    sink.failing = true;
    log.append(audit_event::order_allowed, payload(1));
    log.append(audit_event::order_rejected, payload(2));
    CHECK_THROWS_AS(log.flush(), Error);
    CHECK(log.durable_size() == 1);
    CHECK(log.pending_lines() == 2);
    sink.failing = false;
    log.close();
    CHECK(log.durable_size() == 3);
    REQUIRE(sink.lines.size() == 4);
    const auto certs = certs_for({&agent});
    const auto v = verify_audit_lines(sink.lines, certs);
    INFO(v.message);
    CHECK(v.ok);
}

TEST_CASE("audit: reopening a file log continues seq and the tree", "[audit][writer]") {
    AuditTestKms kms;
    const auto agent = test::make_identity(kms, "agent:agent-7");
    const auto certs = certs_for({&agent});
    ManualClock clock(utc(2024, 1, 8));
    TempDir dir;
    const std::string path = dir.file("agent-7.jsonl");
    AuditWriterOptions opts{"agent-7", "", "", 4};
    {
        FileAuditSink sink(path);
        AuditLogWriter log(sink, clock, agent.signer(kms), opts, agent.signer(kms));
        for (int i = 0; i < 6; ++i) log.append(audit_event::order_allowed, payload(i));
        log.flush();  // crash after this: no final checkpoint
    }
    {
        FileAuditSink sink(path);
        AuditLogWriter log(sink, clock, agent.signer(kms), opts, agent.signer(kms));
        CHECK_FALSE(log.recovery().tail_cut);
        CHECK(log.size() == 6);
        CHECK(log.durable_size() == 6);
        CHECK(log.checkpointed_size() == 4);
        CHECK(log.append(audit_event::guard_halted, R"({"reason":"manual"})") == 6);
        log.close();
    }
    const auto v = verify_audit_log_file(path, certs);
    INFO(v.message);
    CHECK(v.ok);
    CHECK(v.records == 7);
    CHECK(v.covered == 7);

    // A log of another agent cannot be continued under this log_id.
    FileAuditSink sink(path);
    CHECK_THAT(error_of([&] {
                   AuditLogWriter w(sink, clock, agent.signer(kms), AuditWriterOptions{"agent-8"});
               }),
               Catch::Contains("line 1") && Catch::Contains("agent-8"));
}

TEST_CASE("audit: a torn tail is cut on reopen and the cut is recorded", "[audit][writer]") {
    AuditTestKms kms;
    const auto agent = test::make_identity(kms, "agent:agent-7");
    const auto certs = certs_for({&agent});
    ManualClock clock(utc(2024, 1, 8));
    TempDir dir;
    const std::string path = dir.file("agent-7.jsonl");
    AuditWriterOptions opts{"agent-7", "", "", 100};
    std::string torn;
    {
        FileAuditSink sink(path);
        AuditLogWriter log(sink, clock, agent.signer(kms), opts, agent.signer(kms));
        for (int i = 0; i < 3; ++i) log.append(audit_event::order_allowed, payload(i));
        log.flush();
        // What a kill -9 in the middle of write() leaves: the start of record 3.
        torn = make_audit_record(3, 9, "agent-7", "agent-7", agent.fp, audit_event::order_allowed,
                                 payload(3))
                   .line()
                   .substr(0, 40);
    }
    append_raw(path, torn);
    {
        FileAuditSink sink(path);
        AuditLogWriter log(sink, clock, agent.signer(kms), opts, agent.signer(kms));
        CHECK(log.recovery().tail_cut);
        CHECK(log.size() == 4);
        CHECK(log.durable_size() == 4);  // the truncation record is durable before the log opens
        log.append(audit_event::order_allowed, payload(4));
        log.close();
    }
    const auto lines = split_lines(read_file(path));
    REQUIRE(lines.size() == 6);
    const AuditRecord cut = parse_audit_record(lines[3]);
    CHECK(cut.seq == 3);
    CHECK(cut.event == "log.truncated_tail");
    CHECK_THAT(cut.canonical, Catch::Contains("\"cut_bytes\":40") &&
                                  Catch::Contains("\"reason\":\"no trailing newline\""));
    const auto v = verify_audit_log_file(path, certs);
    INFO(v.message);
    CHECK(v.ok);
    CHECK(v.records == 5);
}

// ---- the fast scanner and the detailed parser must agree on every line -------------------------

namespace {

// The reference definition: parses, meets the preconditions, and serialises back to itself.
bool reference_canonical(const std::string& text) {
    try {
        const auto j = audit_detail::parse_strict(text, "t");
        return audit_detail::precondition_violation(j, "$").empty() && j.dump() == text;
    } catch (const Error&) {
        return false;
    }
}

void check_agreement(const std::string& line) {
    audit_detail::ParsedLine fast;
    audit_detail::ParsedLine slow;
    std::string error;
    const bool f = audit_detail::parse_line_fast(line, fast);
    const bool s = audit_detail::parse_line_detailed(line, slow, error);
    INFO("line: " << line << " / detailed says: " << error);
    REQUIRE(f == s);
    REQUIRE(audit_detail::is_canonical_json(line) == reference_canonical(line));
    if (f) {
        REQUIRE(fast.kind == slow.kind);
        if (fast.kind == audit_detail::LineKind::record) {
            REQUIRE(fast.canonical == slow.canonical);
            REQUIRE(fast.record.seq == slow.record.seq);
            REQUIRE(fast.record.ts_ns == slow.record.ts_ns);
            REQUIRE(fast.record.log_id == slow.record.log_id);
            REQUIRE(fast.record.event == slow.record.event);
            REQUIRE(fast.record.sig == slow.record.sig);
            REQUIRE(fast.agent == slow.agent);
            REQUIRE(fast.cert_fp == slow.cert_fp);
        } else {
            REQUIRE(fast.checkpoint.line() == slow.checkpoint.line());
        }
    }
}

}  // namespace

TEST_CASE("audit: the one-pass scanner agrees with the detailed parser on mutated lines",
          "[audit][canonical]") {
    AuditTestKms kms;
    const auto id = test::make_identity(kms, "k");
    AuditRecord signed_record = make_audit_record(
        12, -3, "log \"7\"", "agent\\7", id.fp, audit_event::incident_opened,
        "{\"a\":[1,-2,0,18446744073709551615,-9223372036854775808,true,false,null,{}],"
        "\"b\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\\u0001\\n\\\"\",\"c\":{\"\":[]}}");
    sign_audit_record(id.signer(kms), signed_record);
    MerkleTree t;
    t.append(signed_record.leaf_hash());
    const std::vector<std::string> seeds = {
        signed_record.line(), signed_record.canonical,
        sign_audit_checkpoint(id.signer(kms), "log", 1, t.root(), 5).line(),
        make_audit_record(0, 1, "l", "a", "f", audit_event::order_allowed, "{}").line()};
    const std::string replacements[] = {" ",
                                        "\"",
                                        "\\",
                                        "0",
                                        "9",
                                        "-",
                                        ".",
                                        "e",
                                        "}",
                                        "]",
                                        ",",
                                        ":",
                                        "a",
                                        "u",
                                        "\x7f",
                                        "\x01",
                                        "\xc3",
                                        "\xff",
                                        "\xed\xa0\x80",
                                        "\\u0000",
                                        ""};
    std::uint64_t mutations = 0;
    for (const auto& seed : seeds) {
        check_agreement(seed);
        for (std::size_t i = 0; i < seed.size(); ++i) {
            for (const auto& r : replacements) {
                std::string replaced = seed;
                replaced.replace(i, 1, r);
                check_agreement(replaced);
                std::string inserted = seed;
                inserted.insert(i, r);
                check_agreement(inserted);
                mutations += 2;
            }
        }
    }
    CHECK(mutations > 10000);
}

TEST_CASE("audit: time-based checkpoints", "[audit][writer]") {
    AuditTestKms kms;
    const auto agent = test::make_identity(kms, "agent:a");
    ManualClock clock(utc(2024, 1, 8));
    MemoryAuditSink sink;
    AuditWriterOptions opts{"a", "", "", 0};
    opts.checkpoint_interval_ns = 500'000'000;  // 500 ms
    AuditLogWriter log(sink, clock, agent.signer(kms), opts);
    CHECK_FALSE(log.maybe_checkpoint());  // nothing to cover
    log.append(audit_event::order_allowed, payload(0));
    clock.advance(std::chrono::milliseconds(100));
    log.append(audit_event::order_allowed, payload(1));
    CHECK(log.checkpointed_size() == 0);
    CHECK_FALSE(log.maybe_checkpoint());
    clock.advance(std::chrono::milliseconds(400));
    CHECK(log.maybe_checkpoint());  // due without a new record
    CHECK(log.checkpointed_size() == 2);
    CHECK_FALSE(log.maybe_checkpoint());
    clock.advance(std::chrono::milliseconds(200));
    log.append(audit_event::order_allowed, payload(2));
    CHECK(log.checkpointed_size() == 2);
    clock.advance(std::chrono::milliseconds(300));
    log.append(audit_event::order_allowed, payload(3));  // the append itself triggers it
    CHECK(log.checkpointed_size() == 4);
    log.close();
    CHECK_FALSE(log.maybe_checkpoint());
    const auto lines = sink.lines();
    REQUIRE(lines.size() == 6);
    CHECK(parse_audit_checkpoint(lines[2]).ts_ns == utc(2024, 1, 8) + 500'000'000);
}

TEST_CASE("audit: a file log has one writer at a time", "[audit][sink]") {
    TempDir dir;
    const std::string path = dir.file("agent.jsonl");
    auto first = std::make_unique<FileAuditSink>(path);
    CHECK_THAT(error_of([&] { FileAuditSink second(path); }),
               Catch::Contains("io") && Catch::Contains("already open for writing"));
    first.reset();
    CHECK_NOTHROW(FileAuditSink(path));
}

TEST_CASE("audit: a failed append leaves no partial batch in the file", "[audit][sink]") {
    TempDir dir;
    const std::string path = dir.file("agent.jsonl");
    FileAuditSink sink(path);
    sink.append(std::string_view("{\"a\":1}"));
    // Make the file system refuse growth past 100 bytes: the next write is cut short, then fails.
    rlimit old{};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
    auto previous = std::signal(SIGXFSZ, SIG_IGN);
    rlimit small = old;
    small.rlim_cur = 100;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
    const std::vector<std::string> batch(20, "{\"b\":2}");
    std::string error = error_of([&] { sink.append(batch); });
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &old) == 0);
    std::signal(SIGXFSZ, previous);
    CHECK_THAT(error, Catch::Contains("io") && Catch::Contains("write"));
    CHECK(read_file(path) == "{\"a\":1}\n");
    // The sink stays usable and appends after the last complete line.
    sink.append(std::string_view("{\"c\":3}"));
    CHECK(read_file(path) == "{\"a\":1}\n{\"c\":3}\n");
}
