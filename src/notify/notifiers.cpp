// The simple notifiers: callback, log line, in-memory, fan-out.

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>

#include "kakunin/error.hpp"
#include "kakunin/notifier.hpp"
#include "kakunin/replay.hpp"
#include "notify/notification_json.hpp"

namespace kakunin {

// ---- CallbackNotifier ------------------------------------------------------------------------

CallbackNotifier::CallbackNotifier(Callback callback) : m_callback(std::move(callback)) {
    if (!m_callback)
        throw Error(ErrorCategory::invalid_input, "CallbackNotifier: the callback is empty");
}

void CallbackNotifier::notify(const Notification& n) noexcept {
    try {
        m_callback(n);
    } catch (...) {
        m_exceptions.fetch_add(1, std::memory_order_relaxed);
    }
}

std::uint64_t CallbackNotifier::exceptions() const noexcept {
    return m_exceptions.load(std::memory_order_relaxed);
}

// ---- LoggingNotifier -------------------------------------------------------------------------

struct LoggingNotifier::File {
    std::ofstream out;
};

namespace {

/// logfmt-style quoting: one line whatever the input.
void append_quoted(std::string& line, std::string_view s) {
    line += '"';
    for (char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            line += '\\';
            line += c;
        } else if (u < 0x20 || u == 0x7f) {
            line += ' ';
        } else {
            line += c;
        }
    }
    line += '"';
}

}  // namespace

LoggingNotifier::LoggingNotifier(std::ostream& out, Format format)
    : m_out(&out), m_format(format) {}

LoggingNotifier::LoggingNotifier() : LoggingNotifier(std::cerr) {}

LoggingNotifier::LoggingNotifier(const std::string& path, Format format)
    : m_file(std::make_unique<File>()), m_out(nullptr), m_format(format) {
    errno = 0;
    m_file->out.open(path, std::ios::out | std::ios::app | std::ios::binary);
    if (!m_file->out) {
        const int e = errno;
        throw Error(ErrorCategory::io, "LoggingNotifier: cannot open " + path + " for appending" +
                                           (e != 0 ? std::string(": ") + std::strerror(e) : ""));
    }
    m_out = &m_file->out;
}

LoggingNotifier::~LoggingNotifier() = default;

std::string LoggingNotifier::format_line(const Notification& n) {
    std::string line = format_timestamp(n.at_ns);
    line += " kakunin ";
    line += to_string(n.kind);
    line += " agent=";
    append_quoted(line, n.agent_id);
    if (!n.incident_id.empty()) {
        line += " incident=";
        append_quoted(line, n.incident_id);
    }
    line += " score_ppm=";
    line += std::to_string(n.score_ppm);
    line += " summary=";
    append_quoted(line, n.summary);
    return line;
}

void LoggingNotifier::notify(const Notification& n) noexcept {
    try {
        std::string line;
        if (m_format == Format::text) {
            line = format_line(n);
        } else {
            std::string details_error;
            line = notify_detail::notification_json(n, &details_error);
        }
        line += '\n';
        std::lock_guard<std::mutex> lock(m_mutex);
        m_out->write(line.data(), static_cast<std::streamsize>(line.size()));
        m_out->flush();
        if (!*m_out) {
            ++m_write_failures;
            m_out->clear();  // try again with the next line (the disk may have room by then)
        }
    } catch (...) {
        std::lock_guard<std::mutex> lock(m_mutex);
        ++m_write_failures;
    }
}

std::uint64_t LoggingNotifier::write_failures() const noexcept {
    std::lock_guard<std::mutex> lock(m_mutex);
    return m_write_failures;
}

// ---- MemoryNotifier --------------------------------------------------------------------------

void MemoryNotifier::notify(const Notification& n) noexcept {
    try {
        std::lock_guard<std::mutex> lock(m_mutex);
        m_notifications.push_back(n);
    } catch (...) {
        return;  // out of memory: nothing sensible to do in a test double
    }
    m_arrived.notify_all();
}

std::vector<Notification> MemoryNotifier::notifications() const {
    std::lock_guard<std::mutex> lock(m_mutex);
    return m_notifications;
}

std::size_t MemoryNotifier::size() const {
    std::lock_guard<std::mutex> lock(m_mutex);
    return m_notifications.size();
}

bool MemoryNotifier::wait_for(std::size_t count, std::chrono::milliseconds timeout) const {
    std::unique_lock<std::mutex> lock(m_mutex);
    return m_arrived.wait_for(lock, timeout, [&] { return m_notifications.size() >= count; });
}

// ---- MultiNotifier ---------------------------------------------------------------------------

MultiNotifier::MultiNotifier(std::vector<std::shared_ptr<Notifier>> notifiers)
    : m_notifiers(std::move(notifiers)) {
    for (std::size_t i = 0; i < m_notifiers.size(); ++i)
        if (!m_notifiers[i])
            throw Error(ErrorCategory::invalid_input,
                        "MultiNotifier: notifier " + std::to_string(i) + " is null");
}

void MultiNotifier::notify(const Notification& n) noexcept {
    for (const auto& notifier : m_notifiers) notifier->notify(n);
}

}  // namespace kakunin
