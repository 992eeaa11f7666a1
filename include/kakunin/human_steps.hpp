// kakunin/human_steps.hpp — the steps people take with the command line (acknowledge, resolve,
// review, re-enable, lift reduce-only) reaching the running Guards of their agent. A Guard
// subscribed to a feed applies each step of its agent through its own public calls, which
// record it in the agent's log.
//
//   auto steps = std::make_shared<kakunin::FileHumanStepFeed>("state");  // follows the CA log
//   options.human_steps = steps;            // the Guard subscribes itself (credentials needed)
//   // kakunin incident ack --dir state --agent agent-7 --incident inc-... --by "On Call"
//   // -> within ~200 ms guard.incidents() shows it acknowledged; no escalation follows
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kakunin/clock.hpp"
#include "kakunin/incident.hpp"

namespace kakunin {

/// One step a named person took on an agent, as recorded in the CA log (docs/behaviour.md,
/// "Human steps reach running Guards").
struct HumanStep {
    enum class Kind : std::uint8_t { acknowledge, resolve, review, reenable, lift_reduce_only };
    Kind kind = Kind::acknowledge;
    std::string agent_id;
    /// acknowledge, resolve, review: the incident; reenable: the halt; lift_reduce_only: empty.
    std::string target;
    std::string by;
    std::string note;  ///< the note, root cause or reason
    TimeNs at_ns = 0;  ///< when the person took it (the recording tool's clock)
    /// Where it came from, for messages: "CA log seq 12", "postgres human step 3".
    std::string source;
    std::uint64_t seq = 0;  ///< its position in that source (CA log seq, table seq)
    /// Made before the listener subscribed (delivered from the feed's history on subscribe).
    bool history = false;
    std::optional<IncidentReview> review;  ///< review: the signed statement
    std::optional<Reenable> reenable;      ///< reenable: the signed statement
};

const char* to_string(HumanStep::Kind k) noexcept;

/// The record event a step is kept under: incident.acknowledged, incident.resolved,
/// review.signed, guard.resumed, guard.reduce_only_lifted.
std::string_view human_step_event(HumanStep::Kind k) noexcept;

/// The step's record payload (JSON object): for review and reenable the signed statement
/// (to_json), otherwise {"agent","incident"|"halt"...,"by","note","at_ns"}. Throws
/// kakunin::Error (invalid_input) for a review or reenable step without its statement.
std::string human_step_payload(const HumanStep& step);

/// The step a CA-log record holds, or nullopt for any other event. Throws kakunin::Error
/// (invalid_input) naming the member for a step record whose payload is malformed.
std::optional<HumanStep> human_step_from_record(std::string_view event,
                                                std::string_view payload_json);

/// Receives steps. Called on the feed's thread (or, for the history, on the subscriber's thread
/// inside subscribe()); must not throw. May take a while (the Guard records the step), but
/// should not block for long: it delays the steps behind it.
class HumanStepListener {
public:
    virtual ~HumanStepListener() = default;
    virtual void on_human_step(const HumanStep& step) noexcept = 0;
};

/// A source of human steps (the CA log of a state directory, PostgreSQL LISTEN/NOTIFY, ...).
/// Threading: subscribe/unsubscribe may be called from any thread. subscribe() first delivers,
/// synchronously, every step already recorded (history = true), then later ones from the
/// feed's thread, each once per listener, in order. After unsubscribe() returns, the listener
/// is not called again.
class HumanStepFeed {
public:
    virtual ~HumanStepFeed() = default;
    virtual void subscribe(HumanStepListener* listener) = 0;
    virtual void unsubscribe(HumanStepListener* listener) noexcept = 0;
};

/// Delivers publish() synchronously to every subscriber (tests, in-process tools); keeps what it
/// published for later subscribers.
class InProcessHumanStepFeed final : public HumanStepFeed {
public:
    void subscribe(HumanStepListener* listener) override {
        std::lock_guard<std::mutex> lock(m_mutex);
        for (HumanStep s : m_history) {
            s.history = true;
            listener->on_human_step(s);
        }
        m_listeners.push_back(listener);
    }
    void unsubscribe(HumanStepListener* listener) noexcept override {
        std::lock_guard<std::mutex> lock(m_mutex);
        m_listeners.erase(std::remove(m_listeners.begin(), m_listeners.end(), listener),
                          m_listeners.end());
    }
    void publish(const HumanStep& step) {
        std::lock_guard<std::mutex> lock(m_mutex);
        m_history.push_back(step);
        for (HumanStepListener* l : m_listeners) l->on_human_step(step);
    }

private:
    std::mutex m_mutex;
    std::vector<HumanStep> m_history;
    std::vector<HumanStepListener*> m_listeners;
};

struct FileHumanStepFeedOptions {
    /// How often the CA log is looked at (at most 200 ms: steps reach Guards within that).
    std::chrono::milliseconds poll_interval{50};
    /// Told about a CA log that cannot be read, a line that does not parse or whose CA
    /// signature does not verify (each is skipped). Called on the feed's thread or in
    /// subscribe(); must not throw. Empty: nobody is told.
    std::function<void(std::string_view)> error_handler = {};
};

/// Follows STATE/audit/ca.jsonl of a state directory (kakunin ca init), read-only and without a
/// lock, on its own thread: every record of a step (see human_step_event) whose CA signature
/// verifies under STATE/ca.pem is delivered. A last line without its newline (a write in
/// progress) is read once it is complete. Throws kakunin::Error (not_found, invalid_input) if
/// STATE/ca.pem cannot be loaded; a CA log that does not exist yet is waited for.
class FileHumanStepFeed final : public HumanStepFeed {
public:
    explicit FileHumanStepFeed(std::string state_dir, FileHumanStepFeedOptions options = {});
    ~FileHumanStepFeed() override;
    FileHumanStepFeed(const FileHumanStepFeed&) = delete;
    FileHumanStepFeed& operator=(const FileHumanStepFeed&) = delete;

    void subscribe(HumanStepListener* listener) override;
    void unsubscribe(HumanStepListener* listener) noexcept override;

    /// Steps read so far.
    std::size_t steps_seen() const;

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

}  // namespace kakunin
