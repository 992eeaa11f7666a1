// Private: one thread that runs many tasks in rounds (SharedThreads: every Guard's audit writer
// on one, every Guard's incident desk on another).
//
//   struct Writer final : detail::TaskThread::Task { ... };
//   thread.add(writer);     // due at once
//   thread.wake(writer);    // due again now (a stop request)
//   thread.remove(writer);  // never runs again; waits for a round that holds it
//
// A round takes every task that is due, calls prepare() on each, then run() on each, in the
// order they were added: prepare() hands work over (lines to a sink) so that run() of the first
// task can complete everyone's (one group commit). run() returns when the task is due again.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace kakunin::detail {

class TaskThread {
public:
    class Task {
    public:
        /// run() returns it: not due again until woken.
        static constexpr std::chrono::microseconds idle{-1};
        virtual ~Task() = default;
        /// The first half of a round, before any task's run(). Must not throw.
        virtual void prepare() noexcept {}
        /// The task's work; returns how long until it is due again (zero: the next round), or
        /// `idle`. Must not throw.
        virtual std::chrono::microseconds run() noexcept = 0;
    };

    /// Starts the thread; `name` (at most 15 characters) is what top -H and gdb show.
    explicit TaskThread(const char* name);
    /// Stops the thread; every task must have been removed.
    ~TaskThread();
    TaskThread(const TaskThread&) = delete;
    TaskThread& operator=(const TaskThread&) = delete;

    /// `task` takes part from the next round on (due at once) until remove(). Not from a task.
    void add(Task& task);
    /// `task` is due now (or again right after the round that holds it). Any thread.
    void wake(Task& task) noexcept;
    /// `task` never runs again; waits for a round that holds it to end. Not from a task.
    void remove(Task& task) noexcept;
    std::size_t size() const noexcept;

private:
    using Time = std::chrono::steady_clock::time_point;
    struct Entry {
        Task* task;
        Time due;
        bool running = false;
        bool woken = false;
        std::chrono::microseconds next{0};
    };
    void loop() noexcept;

    mutable std::mutex m_mutex;
    std::condition_variable m_changed;  ///< a task added, woken or done with a round; stop
    std::vector<std::unique_ptr<Entry>> m_entries;
    bool m_stop = false;
    std::thread m_thread;
};

}  // namespace kakunin::detail
