#include "runtime/task_thread.hpp"

#include <pthread.h>

#include <algorithm>
#include <utility>

#include "kakunin/shared_threads.hpp"

namespace kakunin::detail {

TaskThread::TaskThread(const char* name) {
    m_thread = std::thread([this] { loop(); });
    ::pthread_setname_np(m_thread.native_handle(), name);  // cosmetic: a failure changes nothing
}

TaskThread::~TaskThread() {
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        m_stop = true;
    }
    m_changed.notify_all();
    m_thread.join();
}

void TaskThread::add(Task& task) {
    auto entry = std::make_unique<Entry>();
    entry->task = &task;
    entry->due = std::chrono::steady_clock::now();
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        m_entries.push_back(std::move(entry));
    }
    m_changed.notify_all();
}

void TaskThread::wake(Task& task) noexcept {
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        for (auto& e : m_entries) {
            if (e->task != &task) continue;
            if (e->running)
                e->woken = true;
            else
                e->due = std::chrono::steady_clock::now();
        }
    }
    m_changed.notify_all();
}

void TaskThread::remove(Task& task) noexcept {
    std::unique_lock<std::mutex> lock(m_mutex);
    const auto it = std::find_if(m_entries.begin(), m_entries.end(),
                                 [&](const std::unique_ptr<Entry>& e) { return e->task == &task; });
    if (it == m_entries.end()) return;
    Entry* entry = it->get();
    m_changed.wait(lock, [&] { return !entry->running; });
    // The vector may have changed while waiting: find it again.
    m_entries.erase(
        std::find_if(m_entries.begin(), m_entries.end(),
                     [&](const std::unique_ptr<Entry>& e) { return e.get() == entry; }));
}

std::size_t TaskThread::size() const noexcept {
    std::lock_guard<std::mutex> lock(m_mutex);
    return m_entries.size();
}

void TaskThread::loop() noexcept {
    std::vector<Entry*> round;
    std::unique_lock<std::mutex> lock(m_mutex);
    while (!m_stop) {
        const Time now = std::chrono::steady_clock::now();
        Time earliest = Time::max();
        round.clear();
        try {
            round.reserve(m_entries.size());  // grows only with the tasks
        } catch (...) {                       // no memory for a few pointers: try again shortly
            m_changed.wait_for(lock, std::chrono::milliseconds(1));
            continue;
        }
        for (auto& e : m_entries) {
            if (e->due <= now) {
                e->running = true;
                round.push_back(e.get());
            } else {
                earliest = std::min(earliest, e->due);
            }
        }
        if (round.empty()) {
            if (earliest == Time::max())
                m_changed.wait(lock);
            else
                m_changed.wait_until(lock, earliest);
            continue;
        }
        lock.unlock();
        for (Entry* e : round) e->task->prepare();
        for (Entry* e : round) e->next = e->task->run();
        lock.lock();
        const Time done = std::chrono::steady_clock::now();
        for (Entry* e : round) {
            e->running = false;
            if (std::exchange(e->woken, false))
                e->due = done;
            else
                e->due = e->next < std::chrono::microseconds(0) ? Time::max() : done + e->next;
        }
        m_changed.notify_all();  // remove() waits for its task's round to end
    }
}

}  // namespace kakunin::detail

namespace kakunin {

struct SharedThreads::Impl {
    detail::TaskThread audit{"kakunin-audit"};
    detail::TaskThread incidents{"kakunin-incident"};
    detail::TaskThread watchdogs{"kakunin-watch"};
    detail::TaskThread reporter{"kakunin-report"};
};

SharedThreads::SharedThreads() : m_impl(std::make_unique<Impl>()) {}
SharedThreads::~SharedThreads() = default;

std::size_t SharedThreads::audit_trails() const noexcept { return m_impl->audit.size(); }
std::size_t SharedThreads::incident_desks() const noexcept { return m_impl->incidents.size(); }

namespace detail {
TaskThread& audit_writer_thread(SharedThreads& threads) { return threads.m_impl->audit; }
TaskThread& incident_thread(SharedThreads& threads) { return threads.m_impl->incidents; }
TaskThread& watchdog_thread(SharedThreads& threads) { return threads.m_impl->watchdogs; }
TaskThread& reporter_thread(SharedThreads& threads) { return threads.m_impl->reporter; }
}  // namespace detail

}  // namespace kakunin
