"""Public ERC-8004 deployments, shipped as data and loaded disabled (migration 0002).

Source: erc8004 notes §3 (the contracts repo README at b9e466c and third-party start
blocks). Start blocks are *start* hints, not proven deployment blocks; where no
source gives one the start is 0 and the operator should set it before enabling the
chain (or the first poll scans from genesis, slowly but correctly). No RPC endpoint
is shipped: add your own provider URLs in the admin, then enable the chain.
"""

from __future__ import annotations

__all__ = ("KNOWN_CHAINS", "LEGACY_V04_SETS", "MAINNET_SET", "TESTNET_SET")

# The same vanity addresses on every chain of a class (CREATE2 via the Safe factory).
MAINNET_SET = {
    "identity": "0x8004A169FB4a3325136EB29fA0ceB6D2e539a432",
    "reputation": "0x8004BAa17C55a88189AE136b182e5fdA19dE9b63",
}
TESTNET_SET = {
    "identity": "0x8004A818BFB912233c491871b3d84c89A494BD9e",
    "reputation": "0x8004B663056A597Dffe9eCcC1965A193B7388713",
}

# (chain id, name, is_testnet, confirmations, identity start block, reputation start block)
KNOWN_CHAINS: list[tuple[int, str, bool, int, int, int]] = [
    (1, "Ethereum", False, 12, 24339871, 24339873),
    (8453, "Base", False, 10, 41663783, 41663784),
    (2741, "Abstract", False, 10, 0, 0),
    (42161, "Arbitrum One", False, 20, 0, 0),
    (43114, "Avalanche C-Chain", False, 5, 0, 0),
    (56, "BNB Smart Chain", False, 15, 79031671, 79031676),
    (42220, "Celo", False, 10, 0, 0),
    (100, "Gnosis", False, 10, 0, 0),
    (2345, "GOAT Network", False, 10, 0, 0),
    (59144, "Linea", False, 10, 0, 0),
    (5000, "Mantle", False, 10, 0, 0),
    (4326, "MegaETH", False, 20, 0, 0),
    (1088, "Metis", False, 10, 0, 0),
    (143, "Monad", False, 10, 52952898, 52952903),
    (10, "OP Mainnet", False, 10, 0, 0),
    (137, "Polygon", False, 32, 82458528, 82458532),
    (534352, "Scroll", False, 10, 0, 0),
    (1187947933, "SKALE Base", False, 5, 0, 0),
    (1868, "Soneium", False, 10, 0, 0),
    (167000, "Taiko", False, 10, 0, 0),
    (196, "X Layer", False, 10, 0, 0),
    (11155111, "Ethereum Sepolia", True, 3, 9989393, 9989394),
    (84532, "Base Sepolia", True, 3, 36304145, 36304146),
    (11124, "Abstract Testnet", True, 3, 0, 0),
    (421614, "Arbitrum Sepolia", True, 3, 0, 0),
    (43113, "Avalanche Fuji", True, 3, 0, 0),
    (97, "BNB Smart Chain Testnet", True, 3, 78270834, 77785485),
    (11142220, "Celo Sepolia", True, 3, 0, 0),
    (59141, "Linea Sepolia", True, 3, 0, 0),
    (5003, "Mantle Sepolia", True, 3, 0, 0),
    (6343, "MegaETH Testnet", True, 3, 0, 0),
    (59902, "Metis Sepolia", True, 3, 0, 0),
    (10143, "Monad Testnet", True, 3, 10392352, 10392356),
    (11155420, "OP Sepolia", True, 3, 0, 0),
    (80002, "Polygon Amoy", True, 3, 0, 0),
    (534351, "Scroll Sepolia", True, 3, 0, 0),
    (324705682, "SKALE Base Sepolia", True, 3, 0, 0),
    (1946, "Soneium Minato", True, 3, 0, 0),
    (167013, "Taiko Hoodi", True, 3, 0, 0),
    (1952, "X Layer Testnet", True, 3, 0, 0),
    (296, "Hedera Testnet", True, 3, 0, 0),
    (5042002, "Arc Testnet", True, 3, 29241340, 29241344),
]

# Oct-2025 v0.4 testnet sets: old ABI, their own identity registry (agent ids are a
# separate namespace from the v1 set on the same chain).
LEGACY_V04_SETS: dict[int, dict[str, str]] = {
    11155111: {
        "identity": "0x8004a6090Cd10A7288092483047B097295Fb8847",
        "reputation": "0x8004B8FD1A363aa02fDC07635C0c5F94f6Af5B7E",
        "validation": "0x8004CB39f29c09145F24Ad9dDe2A108C1A2cdfC5",
    },
    84532: {
        "identity": "0x8004AA63c570c570eBF15376c0dB199918BFe9Fb",
        "reputation": "0x8004bd8daB57f14Ed299135749a5CB5c42d341BF",
        "validation": "0x8004C269D0A5647E51E121FeB226200ECE932d55",
    },
    59141: {
        "identity": "0x8004aa7C931bCE1233973a0C6A667f73F66282e7",
        "reputation": "0x8004bd8483b99310df121c46ED8858616b2Bba02",
        "validation": "0x8004c44d1EFdd699B2A26e781eF7F77c56A9a4EB",
    },
    80002: {
        "identity": "0x8004ad19E14B9e0654f73353e8a0B600D46C2898",
        "reputation": "0x8004B12F4C2B42d00c46479e859C92e39044C930",
        "validation": "0x8004C11C213ff7BaD36489bcBDF947ba5eee289B",
    },
}
