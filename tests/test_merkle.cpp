// RFC 9162 Merkle tree: known vectors (the RFC 6962 reference test tree) and a cross-check of
// every root, inclusion proof and consistency proof against a naive recursive implementation.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "kakunin/audit_merkle.hpp"
#include "kakunin/error.hpp"

using kakunin::MerkleHash;
using kakunin::MerkleTree;

namespace {

std::string unhex(const std::string& hex) {
    std::string out;
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
        out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    }
    return out;
}

MerkleHash h(const std::string& hex) { return kakunin::merkle_hash_from_hex(hex); }

// The eight leaves of the reference test tree used by the RFC 6962 implementations.
const std::vector<std::string> kLeaves = {"",
                                          "00",
                                          "10",
                                          "2021",
                                          "3031",
                                          "40414243",
                                          "5051525354555657",
                                          "606162636465666768696a6b6c6d6e6f"};

// MTH of the first n leaves, n = 1..8.
const std::vector<std::string> kRoots = {
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"};

MerkleTree reference_tree() {
    MerkleTree t;
    for (const auto& l : kLeaves) t.append(kakunin::merkle_leaf_hash(unhex(l)));
    return t;
}

// ---- naive RFC 9162 §2.1 definitions, straight from the text ----------------------------------

std::uint64_t k_for(std::uint64_t n) {
    std::uint64_t k = 1;
    while (k * 2 < n) k *= 2;
    return k;
}

MerkleHash naive_mth(const std::vector<MerkleHash>& d, std::uint64_t lo, std::uint64_t hi) {
    const std::uint64_t n = hi - lo;
    if (n == 0) return kakunin::sha256("");
    if (n == 1) return d[lo];
    const std::uint64_t k = k_for(n);
    return kakunin::merkle_node_hash(naive_mth(d, lo, lo + k), naive_mth(d, lo + k, hi));
}

std::vector<MerkleHash> naive_path(std::uint64_t m, const std::vector<MerkleHash>& d,
                                   std::uint64_t lo, std::uint64_t hi) {
    const std::uint64_t n = hi - lo;
    if (n == 1) return {};
    const std::uint64_t k = k_for(n);
    std::vector<MerkleHash> out;
    if (m < k) {
        out = naive_path(m, d, lo, lo + k);
        out.push_back(naive_mth(d, lo + k, hi));
    } else {
        out = naive_path(m - k, d, lo + k, hi);
        out.push_back(naive_mth(d, lo, lo + k));
    }
    return out;
}

std::vector<MerkleHash> naive_subproof(std::uint64_t m, const std::vector<MerkleHash>& d,
                                       std::uint64_t lo, std::uint64_t hi, bool b) {
    const std::uint64_t n = hi - lo;
    if (m == n) {
        if (b) return {};
        return {naive_mth(d, lo, hi)};
    }
    const std::uint64_t k = k_for(n);
    std::vector<MerkleHash> out;
    if (m <= k) {
        out = naive_subproof(m, d, lo, lo + k, b);
        out.push_back(naive_mth(d, lo + k, hi));
    } else {
        out = naive_subproof(m - k, d, lo + k, hi, false);
        out.push_back(naive_mth(d, lo, lo + k));
    }
    return out;
}

MerkleHash flip(MerkleHash x) {
    x[0] ^= 0x10;
    return x;
}

}  // namespace

TEST_CASE("merkle: hashing primitives", "[merkle]") {
    CHECK(kakunin::to_hex(kakunin::merkle_empty_root()) ==
          "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    // Leaf hash of the empty leaf is SHA-256 of the single byte 0x00.
    CHECK(kakunin::merkle_leaf_hash("") == kakunin::sha256(std::string(1, '\0')));
    MerkleTree empty;
    CHECK(empty.root() == kakunin::merkle_empty_root());
    CHECK_THROWS_AS(kakunin::merkle_hash_from_hex("ABC"), kakunin::Error);
    CHECK_THROWS_AS(kakunin::merkle_hash_from_hex(std::string(64, 'G')), kakunin::Error);
}

TEST_CASE("merkle: roots of the reference tree at every size", "[merkle]") {
    MerkleTree incremental;
    kakunin::MerkleFrontier frontier;
    CHECK(frontier.root() == kakunin::merkle_empty_root());
    for (std::size_t i = 0; i < kLeaves.size(); ++i) {
        incremental.append(kakunin::merkle_leaf_hash(unhex(kLeaves[i])));
        frontier.append(kakunin::merkle_leaf_hash(unhex(kLeaves[i])));
        CHECK(kakunin::to_hex(incremental.root()) == kRoots[i]);
        CHECK(kakunin::to_hex(frontier.root()) == kRoots[i]);
    }
    const MerkleTree full = reference_tree();
    for (std::size_t n = 1; n <= 8; ++n) CHECK(kakunin::to_hex(full.root(n)) == kRoots[n - 1]);
    CHECK_THROWS_AS(full.root(9), kakunin::Error);
}

TEST_CASE("merkle: known inclusion proofs", "[merkle]") {
    const MerkleTree t = reference_tree();
    struct Vec {
        std::uint64_t index, size;
        std::vector<std::string> proof;
    };
    // (leaf index counted from 0)
    const std::vector<Vec> vectors = {
        {0, 1, {}},
        {0,
         8,
         {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
          "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
          "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
        {5,
         8,
         {"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
          "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
          "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
        {2, 3, {"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"}},
        {1,
         5,
         {"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
          "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
          "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
    };
    for (const auto& v : vectors) {
        INFO("leaf " << v.index << " size " << v.size);
        const auto proof = t.inclusion_proof(v.index, v.size);
        REQUIRE(proof.size() == v.proof.size());
        for (std::size_t i = 0; i < proof.size(); ++i)
            CHECK(kakunin::to_hex(proof[i]) == v.proof[i]);
        CHECK(kakunin::verify_inclusion(v.index, v.size, t.leaf(v.index), proof,
                                        h(kRoots[v.size - 1])));
    }
}

TEST_CASE("merkle: known consistency proofs", "[merkle]") {
    const MerkleTree t = reference_tree();
    struct Vec {
        std::uint64_t size1, size2;
        std::vector<std::string> proof;
    };
    const std::vector<Vec> vectors = {
        {1, 1, {}},
        {1,
         8,
         {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
          "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
          "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
        {6,
         8,
         {"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
          "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
          "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
        {2,
         5,
         {"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
          "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
        {6,
         7,
         {"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
          "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
          "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
    };
    for (const auto& v : vectors) {
        INFO("sizes " << v.size1 << " -> " << v.size2);
        const auto proof = t.consistency_proof(v.size1, v.size2);
        REQUIRE(proof.size() == v.proof.size());
        for (std::size_t i = 0; i < proof.size(); ++i)
            CHECK(kakunin::to_hex(proof[i]) == v.proof[i]);
        CHECK(kakunin::verify_consistency(v.size1, v.size2, h(kRoots[v.size1 - 1]),
                                          h(kRoots[v.size2 - 1]), proof));
    }
}

TEST_CASE("merkle: edge cases of proof verification", "[merkle]") {
    const MerkleHash a = kakunin::merkle_leaf_hash("a");
    const MerkleHash b = kakunin::merkle_leaf_hash("b");
    // Inclusion: index must be below size; an empty tree includes nothing.
    CHECK_FALSE(kakunin::verify_inclusion(0, 0, a, {}, kakunin::merkle_empty_root()));
    CHECK_FALSE(kakunin::verify_inclusion(1, 1, a, {}, a));
    CHECK(kakunin::verify_inclusion(0, 1, a, {}, a));
    CHECK_FALSE(kakunin::verify_inclusion(0, 1, a, {b}, a));  // trailing garbage
    // Consistency: any tree extends the empty one; equal sizes need equal roots and no proof.
    CHECK(kakunin::verify_consistency(0, 0, a, a, {}));
    CHECK(kakunin::verify_consistency(0, 5, a, b, {}));
    CHECK_FALSE(kakunin::verify_consistency(0, 5, a, b, {a}));
    CHECK(kakunin::verify_consistency(3, 3, a, a, {}));
    CHECK_FALSE(kakunin::verify_consistency(3, 3, a, b, {}));
    CHECK_FALSE(kakunin::verify_consistency(3, 3, a, a, {b}));
    CHECK_FALSE(kakunin::verify_consistency(4, 3, a, b, {}));
    CHECK_FALSE(kakunin::verify_consistency(1, 2, a, b, {}));
    MerkleTree t;
    t.append(a);
    CHECK_THROWS_AS(t.inclusion_proof(1, 1), kakunin::Error);
    CHECK_THROWS_AS(t.consistency_proof(1, 2), kakunin::Error);
    CHECK_THROWS_AS(t.leaf(1), kakunin::Error);
}

TEST_CASE("merkle: every size and every pair agree with the naive definition", "[merkle]") {
    constexpr std::uint64_t kMax = 64;
    std::vector<MerkleHash> leaves;
    MerkleTree t;
    t.reserve(10);  // smaller than needed on purpose: growth past the reservation must work
    for (std::uint64_t i = 0; i < kMax; ++i) {
        leaves.push_back(kakunin::merkle_leaf_hash("leaf " + std::to_string(i)));
        t.append(leaves.back());
    }
    std::vector<MerkleHash> roots(kMax + 1);
    kakunin::MerkleFrontier frontier;
    for (std::uint64_t n = 0; n <= kMax; ++n) {
        roots[n] = naive_mth(leaves, 0, n);
        REQUIRE(t.root(n) == roots[n]);
        REQUIRE(frontier.size() == n);
        REQUIRE(frontier.root() == roots[n]);
        if (n < kMax) frontier.append(leaves[n]);
    }
    std::uint64_t inclusion_checked = 0;
    std::uint64_t consistency_checked = 0;
    for (std::uint64_t n = 1; n <= kMax; ++n) {
        for (std::uint64_t m = 0; m < n; ++m) {
            const auto proof = t.inclusion_proof(m, n);
            REQUIRE(proof == naive_path(m, leaves, 0, n));
            REQUIRE(kakunin::verify_inclusion(m, n, leaves[m], proof, roots[n]));
            // Wrong index, wrong size, wrong leaf, wrong root, altered, shortened, lengthened.
            if (n > 1) {
                REQUIRE_FALSE(
                    kakunin::verify_inclusion((m + 1) % n, n, leaves[m], proof, roots[n]));
                REQUIRE_FALSE(
                    kakunin::verify_inclusion(m, n, leaves[(m + 1) % n], proof, roots[n]));
                REQUIRE_FALSE(kakunin::verify_inclusion(m, n, leaves[m], proof, flip(roots[n])));
                auto shorter = proof;
                shorter.pop_back();
                REQUIRE_FALSE(kakunin::verify_inclusion(m, n, leaves[m], shorter, roots[n]));
                for (std::size_t i = 0; i < proof.size(); ++i) {
                    auto bad = proof;
                    bad[i] = flip(bad[i]);
                    REQUIRE_FALSE(kakunin::verify_inclusion(m, n, leaves[m], bad, roots[n]));
                }
            }
            auto longer = proof;
            longer.push_back(roots[n]);
            REQUIRE_FALSE(kakunin::verify_inclusion(m, n, leaves[m], longer, roots[n]));
            if (n * 2 <= kMax) {
                REQUIRE_FALSE(kakunin::verify_inclusion(m, n * 2, leaves[m], proof, roots[n]));
            }
            ++inclusion_checked;
        }
        for (std::uint64_t m = 1; m < n; ++m) {
            const auto proof = t.consistency_proof(m, n);
            REQUIRE(proof == naive_subproof(m, leaves, 0, n, true));
            REQUIRE(kakunin::verify_consistency(m, n, roots[m], roots[n], proof));
            REQUIRE_FALSE(kakunin::verify_consistency(m, n, roots[n], roots[m], proof));
            REQUIRE_FALSE(kakunin::verify_consistency(m, n, flip(roots[m]), roots[n], proof));
            REQUIRE_FALSE(kakunin::verify_consistency(m, n, roots[m], flip(roots[n]), proof));
            if (m + 1 < n) {
                REQUIRE_FALSE(kakunin::verify_consistency(m + 1, n, roots[m], roots[n], proof));
            }
            auto shorter = proof;
            shorter.pop_back();
            REQUIRE_FALSE(kakunin::verify_consistency(m, n, roots[m], roots[n], shorter));
            auto longer = proof;
            longer.push_back(roots[n]);
            REQUIRE_FALSE(kakunin::verify_consistency(m, n, roots[m], roots[n], longer));
            for (std::size_t i = 0; i < proof.size(); ++i) {
                auto bad = proof;
                bad[i] = flip(bad[i]);
                REQUIRE_FALSE(kakunin::verify_consistency(m, n, roots[m], roots[n], bad));
            }
            ++consistency_checked;
        }
        CHECK(t.consistency_proof(0, n).empty());
        CHECK(t.consistency_proof(n, n).empty());
    }
    CHECK(inclusion_checked == kMax * (kMax + 1) / 2);
    CHECK(consistency_checked == kMax * (kMax - 1) / 2);
}

TEST_CASE("merkle: a large tree appends and proves in logarithmic size", "[merkle]") {
    MerkleTree t;
    std::vector<MerkleHash> leaves;
    const std::uint64_t n = 100'003;
    for (std::uint64_t i = 0; i < n; ++i) {
        leaves.push_back(kakunin::merkle_leaf_hash(std::to_string(i)));
        t.append(leaves.back());
    }
    const MerkleHash root = t.root();
    kakunin::MerkleFrontier frontier;
    for (const auto& l : leaves) frontier.append(l);
    CHECK(frontier.root() == root);
    for (std::uint64_t i : {std::uint64_t{0}, std::uint64_t{65535}, n / 2, n - 1}) {
        const auto proof = t.inclusion_proof(i, n);
        CHECK(proof.size() <= 17);
        CHECK(kakunin::verify_inclusion(i, n, leaves[i], proof, root));
    }
    const auto cproof = t.consistency_proof(70'000, n);
    CHECK(cproof.size() <= 2 * 17);
    CHECK(kakunin::verify_consistency(70'000, n, t.root(70'000), root, cproof));
}
