// The CSV reading the replay inputs share (orders and events, DESIGN §6): a header naming the
// columns, RFC 4180 quoting, and cells read as decimals, sides and timestamps in time order.
// Every error names "<file>:<line>: <column>: <problem>".
#pragma once

#include <cstddef>
#include <cstdint>
#include <istream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kakunin/clock.hpp"
#include "kakunin/decimal.hpp"
#include "kakunin/order.hpp"

namespace kakunin::csv {

struct Column {
    const char* name;
    bool required;
};

/// Splits one CSV record (RFC 4180 quoting, no embedded newlines). False on a quoting error.
bool split_record(const std::string& line, std::vector<std::string>& fields);

/// A CSV file read record by record. Columns are found by name in the header (any order); a
/// column is addressed by its index in the `columns` the table was opened with. Throws
/// kakunin::Error (invalid_input) naming the file and line; io when the stream fails.
class Table {
public:
    /// Reads the header (a UTF-8 byte order mark and blank lines before it are skipped).
    /// `header` is the required header, quoted when a column is missing.
    Table(std::istream& in, std::string name, std::vector<Column> columns, std::string header);

    /// The next non-blank record; false at the end of the input.
    bool next();

    const std::string& name() const noexcept { return m_name; }
    std::size_t line() const noexcept { return m_line; }
    /// The column is in the header.
    bool has(std::size_t column) const noexcept { return m_where[column] >= 0; }
    /// The cell's text; empty when the column is not in the header.
    const std::string& text(std::size_t column) const;

    /// "<file>:<line>: <what>"
    [[noreturn]] void fail(const std::string& what) const;
    /// "<file>:<line>: <column>: <what>"
    [[noreturn]] void fail(std::size_t column, const std::string& what) const;

    /// A decimal number (an empty cell is not one).
    Decimal decimal(std::size_t column) const;
    /// Empty cell or absent column: none; otherwise a decimal number.
    std::optional<Decimal> optional_decimal(std::size_t column) const;
    /// BUY or SELL.
    Side side(std::size_t column) const;
    /// Empty cell or absent column: none; otherwise BUY or SELL.
    std::optional<Side> optional_side(std::size_t column) const;
    /// A timestamp (parse_timestamp), not earlier than the one this column held on the record
    /// before: rows are in time order.
    TimeNs timestamp_in_order(std::size_t column);

private:
    std::istream& m_in;
    std::string m_name;
    std::vector<Column> m_columns;
    std::vector<int> m_where;  ///< column -> field index, -1 when absent
    std::size_t m_width = 0;
    std::size_t m_line = 0;
    std::string m_text;
    std::vector<std::string> m_fields;
    TimeNs m_previous_ts = INT64_MIN;
};

}  // namespace kakunin::csv
