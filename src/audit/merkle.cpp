// RFC 9162 Merkle tree: hashing, the append-only tree, proof generation and verification.
#include "kakunin/audit_merkle.hpp"

#include <botan/hash.h>

#include "audit/sha256.hpp"
#include "kakunin/error.hpp"

namespace kakunin {

namespace audit_detail {

Botan::HashFunction& thread_sha256() {
    // One instance per thread: creating a Botan hash object allocates, and hashing is on the
    // writer's and the verifier's per-record path.
    thread_local std::unique_ptr<Botan::HashFunction> h =
        Botan::HashFunction::create_or_throw("SHA-256");
    return *h;
}

}  // namespace audit_detail

namespace {

constexpr std::uint8_t kLeafPrefix = 0x00;
constexpr std::uint8_t kNodePrefix = 0x01;

// Largest power of two strictly smaller than n (n >= 2).
std::uint64_t split_point(std::uint64_t n) {
    std::uint64_t k = 1;
    while (k * 2 < n) k *= 2;
    return k;
}

bool is_power_of_two(std::uint64_t n) { return n != 0 && (n & (n - 1)) == 0; }

unsigned log2_exact(std::uint64_t n) {
    unsigned k = 0;
    while ((std::uint64_t{1} << k) < n) ++k;
    return k;
}

}  // namespace

MerkleHash sha256(const void* data, std::size_t size) {
    auto& h = audit_detail::thread_sha256();
    h.update(static_cast<const std::uint8_t*>(data), size);
    MerkleHash out;
    h.final(out.data());
    return out;
}

MerkleHash merkle_leaf_hash(const void* data, std::size_t size) {
    auto& h = audit_detail::thread_sha256();
    h.update(kLeafPrefix);
    h.update(static_cast<const std::uint8_t*>(data), size);
    MerkleHash out;
    h.final(out.data());
    return out;
}

MerkleHash merkle_node_hash(const MerkleHash& left, const MerkleHash& right) {
    auto& h = audit_detail::thread_sha256();
    h.update(kNodePrefix);
    h.update(left.data(), left.size());
    h.update(right.data(), right.size());
    MerkleHash out;
    h.final(out.data());
    return out;
}

MerkleHash merkle_empty_root() { return sha256(nullptr, 0); }

std::string to_hex(const MerkleHash& h) {
    static const char digits[] = "0123456789abcdef";
    std::string s(64, '0');
    for (std::size_t i = 0; i < h.size(); ++i) {
        s[2 * i] = digits[h[i] >> 4];
        s[2 * i + 1] = digits[h[i] & 0x0f];
    }
    return s;
}

MerkleHash merkle_hash_from_hex(std::string_view hex) {
    if (hex.size() != 64) {
        throw Error(ErrorCategory::invalid_input, "hash: expected 64 lowercase hex digits, got " +
                                                      std::to_string(hex.size()) + " characters");
    }
    auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return -1;
    };
    MerkleHash h;
    for (std::size_t i = 0; i < h.size(); ++i) {
        const int hi = nibble(hex[2 * i]);
        const int lo = nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            throw Error(ErrorCategory::invalid_input,
                        "hash: not lowercase hex at offset " + std::to_string(2 * i));
        }
        h[i] = static_cast<std::uint8_t>(hi << 4 | lo);
    }
    return h;
}

// ---- MerkleTree ------------------------------------------------------------------------------

void MerkleTree::reserve(std::uint64_t leaves) {
    if (m_levels.empty()) m_levels.emplace_back();
    m_levels[0].reserve(leaves);
    for (std::size_t k = 1; (leaves >> k) != 0; ++k) {
        if (m_levels.size() <= k) m_levels.emplace_back();
        m_levels[k].reserve(leaves >> k);
    }
}

void MerkleTree::append(const MerkleHash& leaf_hash) {
    if (m_levels.empty()) m_levels.emplace_back();
    m_levels[0].push_back(leaf_hash);
    // Each time a level gets an even number of nodes, the last two complete a subtree one level up.
    for (std::size_t k = 0; m_levels[k].size() % 2 == 0; ++k) {
        if (m_levels.size() <= k + 1) m_levels.emplace_back();
        const auto& level = m_levels[k];
        const std::size_t n = level.size();
        MerkleHash parent = merkle_node_hash(level[n - 2], level[n - 1]);
        m_levels[k + 1].push_back(parent);
    }
}

const MerkleHash& MerkleTree::leaf(std::uint64_t index) const {
    if (index >= size()) {
        throw Error(ErrorCategory::invalid_input, "merkle: leaf " + std::to_string(index) +
                                                      " out of range (size " +
                                                      std::to_string(size()) + ")");
    }
    return m_levels[0][index];
}

MerkleHash MerkleTree::range_hash(std::uint64_t begin, std::uint64_t end) const {
    const std::uint64_t n = end - begin;
    if (is_power_of_two(n) && begin % n == 0) {
        const unsigned k = log2_exact(n);
        return m_levels[k][begin >> k];
    }
    const std::uint64_t k = split_point(n);
    return merkle_node_hash(range_hash(begin, begin + k), range_hash(begin + k, end));
}

MerkleHash MerkleTree::root(std::uint64_t tree_size) const {
    if (tree_size > size()) {
        throw Error(ErrorCategory::invalid_input,
                    "merkle: root of size " + std::to_string(tree_size) +
                        " requested from a tree of size " + std::to_string(size()));
    }
    if (tree_size == 0) return merkle_empty_root();
    return range_hash(0, tree_size);
}

void MerkleTree::path(std::uint64_t index, std::uint64_t begin, std::uint64_t end,
                      std::vector<MerkleHash>& out) const {
    const std::uint64_t n = end - begin;
    if (n <= 1) return;
    const std::uint64_t k = split_point(n);
    if (index < k) {
        path(index, begin, begin + k, out);
        out.push_back(range_hash(begin + k, end));
    } else {
        path(index - k, begin + k, end, out);
        out.push_back(range_hash(begin, begin + k));
    }
}

std::vector<MerkleHash> MerkleTree::inclusion_proof(std::uint64_t index,
                                                    std::uint64_t tree_size) const {
    if (tree_size > size() || index >= tree_size) {
        throw Error(ErrorCategory::invalid_input,
                    "merkle: no inclusion proof for leaf " + std::to_string(index) +
                        " in a tree of size " + std::to_string(tree_size) + " (have " +
                        std::to_string(size()) + " leaves)");
    }
    std::vector<MerkleHash> out;
    path(index, 0, tree_size, out);
    return out;
}

void MerkleTree::subproof(std::uint64_t m, std::uint64_t begin, std::uint64_t end, bool complete,
                          std::vector<MerkleHash>& out) const {
    const std::uint64_t n = end - begin;
    if (m == n) {
        if (!complete) out.push_back(range_hash(begin, end));
        return;
    }
    const std::uint64_t k = split_point(n);
    if (m <= k) {
        subproof(m, begin, begin + k, complete, out);
        out.push_back(range_hash(begin + k, end));
    } else {
        subproof(m - k, begin + k, end, false, out);
        out.push_back(range_hash(begin, begin + k));
    }
}

std::vector<MerkleHash> MerkleTree::consistency_proof(std::uint64_t size1,
                                                      std::uint64_t size2) const {
    if (size2 > size() || size1 > size2) {
        throw Error(ErrorCategory::invalid_input,
                    "merkle: no consistency proof from size " + std::to_string(size1) + " to " +
                        std::to_string(size2) + " (have " + std::to_string(size()) + " leaves)");
    }
    std::vector<MerkleHash> out;
    if (size1 == 0 || size1 == size2) return out;
    subproof(size1, 0, size2, true, out);
    return out;
}

// ---- MerkleFrontier --------------------------------------------------------------------------

void MerkleFrontier::append(const MerkleHash& leaf_hash) {
    m_subtrees.push_back(leaf_hash);
    // Adding one leaf carries like binary addition: each trailing set bit of the old size is a
    // complete subtree of the same height as the new one, and the two merge.
    for (std::uint64_t n = m_size; (n & 1) != 0; n >>= 1) {
        const MerkleHash right = m_subtrees.back();
        m_subtrees.pop_back();
        m_subtrees.back() = merkle_node_hash(m_subtrees.back(), right);
    }
    ++m_size;
}

MerkleHash MerkleFrontier::root() const {
    if (m_subtrees.empty()) return merkle_empty_root();
    // MTH splits at the largest power of two, so the root folds the subtrees from the right.
    MerkleHash r = m_subtrees.back();
    for (std::size_t i = m_subtrees.size() - 1; i-- > 0;) r = merkle_node_hash(m_subtrees[i], r);
    return r;
}

// ---- verification (RFC 9162 §2.1.3.2, §2.1.4.2) ----------------------------------------------

bool merkle_root_from_inclusion(std::uint64_t index, std::uint64_t tree_size,
                                const MerkleHash& leaf_hash, const std::vector<MerkleHash>& proof,
                                MerkleHash& root_out) {
    if (index >= tree_size) return false;
    std::uint64_t fn = index;
    std::uint64_t sn = tree_size - 1;
    MerkleHash r = leaf_hash;
    for (const MerkleHash& p : proof) {
        if (sn == 0) return false;
        if ((fn & 1) != 0 || fn == sn) {
            r = merkle_node_hash(p, r);
            if ((fn & 1) == 0) {
                while ((fn & 1) == 0 && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = merkle_node_hash(r, p);
        }
        fn >>= 1;
        sn >>= 1;
    }
    if (sn != 0) return false;
    root_out = r;
    return true;
}

bool verify_inclusion(std::uint64_t index, std::uint64_t tree_size, const MerkleHash& leaf_hash,
                      const std::vector<MerkleHash>& proof, const MerkleHash& root) {
    MerkleHash computed;
    return merkle_root_from_inclusion(index, tree_size, leaf_hash, proof, computed) &&
           computed == root;
}

bool verify_consistency(std::uint64_t size1, std::uint64_t size2, const MerkleHash& root1,
                        const MerkleHash& root2, const std::vector<MerkleHash>& proof) {
    if (size1 > size2) return false;
    if (size1 == size2) return proof.empty() && root1 == root2;
    if (size1 == 0) return proof.empty();
    if (proof.empty()) return false;

    std::size_t i = 0;
    MerkleHash fr;
    MerkleHash sr;
    // When size1 is a power of two the old root is itself a node of the new tree and the proof
    // omits it: the walk starts from it.
    if (is_power_of_two(size1)) {
        fr = root1;
    } else {
        fr = proof[0];
        i = 1;
    }
    sr = fr;
    std::uint64_t fn = size1 - 1;
    std::uint64_t sn = size2 - 1;
    while ((fn & 1) != 0) {
        fn >>= 1;
        sn >>= 1;
    }
    for (; i < proof.size(); ++i) {
        const MerkleHash& c = proof[i];
        if (sn == 0) return false;
        if ((fn & 1) != 0 || fn == sn) {
            fr = merkle_node_hash(c, fr);
            sr = merkle_node_hash(c, sr);
            if ((fn & 1) == 0) {
                while ((fn & 1) == 0 && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = merkle_node_hash(sr, c);
        }
        fn >>= 1;
        sn >>= 1;
    }
    return fr == root1 && sr == root2 && sn == 0;
}

}  // namespace kakunin
