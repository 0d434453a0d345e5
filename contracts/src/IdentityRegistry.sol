// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {ERC721URIStorage} from "@openzeppelin/contracts/token/ERC721/extensions/ERC721URIStorage.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";

/// @title ERC-8004 Identity Registry (devnet build, contracts 2.0.0 semantics)
/// @notice The project's own, non-upgradeable implementation of the ERC-8004 v1 Identity Registry, written so the
/// indexer can be tested against a real chain. Its event set is identical to the official 2.0.0 ABI (which lives
/// behind a UUPS proxy): the proxy-only events `Initialized` and `Upgraded` are declared but never emitted here.
/// @dev Behaviour mirrored from the official contracts because indexers depend on it:
///  - agentIds start at 0 (`_lastId++`) and are minted with `_safeMint`;
///  - `register*` emits Transfer, [MetadataUpdate], Registered, MetadataSet(agentWallet = owner), MetadataSet per entry;
///  - "agentWallet" is a reserved key, set only with an EIP-712 (or ERC-1271) signature of the new wallet;
///  - every transfer clears agentWallet, emitting MetadataSet(agentWallet, empty) *before* Transfer.
contract IdentityRegistry is ERC721URIStorage, EIP712, Ownable {
    struct MetadataEntry {
        string metadataKey;
        bytes metadataValue;
    }

    event Registered(uint256 indexed agentId, string agentURI, address indexed owner);
    event MetadataSet(
        uint256 indexed agentId, string indexed indexedMetadataKey, string metadataKey, bytes metadataValue
    );
    event URIUpdated(uint256 indexed agentId, string newURI, address indexed updatedBy);
    /// @dev Declared for ABI parity with the official proxy (OZ Initializable); never emitted.
    event Initialized(uint64 version);
    /// @dev Declared for ABI parity with the official proxy (ERC-1967); never emitted.
    event Upgraded(address indexed implementation);

    string private constant _AGENT_WALLET_KEY = "agentWallet";
    bytes32 private constant _AGENT_WALLET_KEY_HASH = keccak256("agentWallet");
    bytes32 private constant _AGENT_WALLET_SET_TYPEHASH =
        keccak256("AgentWalletSet(uint256 agentId,address newWallet,address owner,uint256 deadline)");
    /// @dev A wallet signature may not outlive five minutes: it is a proof of control, not a standing permit.
    uint256 private constant _MAX_DEADLINE_DELAY = 5 minutes;

    uint256 private _lastId;
    mapping(uint256 agentId => mapping(string metadataKey => bytes metadataValue)) private _metadata;

    constructor() ERC721("AgentIdentity", "AGENT") EIP712("ERC8004IdentityRegistry", "1") Ownable(msg.sender) {}

    function register() external returns (uint256 agentId) {
        agentId = _mintAgent(msg.sender, "", false);
    }

    function register(string memory agentURI) external returns (uint256 agentId) {
        agentId = _mintAgent(msg.sender, agentURI, true);
    }

    function register(string memory agentURI, MetadataEntry[] memory metadata) external returns (uint256 agentId) {
        agentId = _mintAgent(msg.sender, agentURI, true);
        for (uint256 i = 0; i < metadata.length; i++) {
            _setAgentMetadata(agentId, metadata[i].metadataKey, metadata[i].metadataValue);
        }
    }

    function getMetadata(uint256 agentId, string memory metadataKey) external view returns (bytes memory) {
        return _metadata[agentId][metadataKey];
    }

    function setMetadata(uint256 agentId, string memory metadataKey, bytes memory metadataValue) external {
        _checkAuthorized(agentId);
        _setAgentMetadata(agentId, metadataKey, metadataValue);
    }

    function setAgentURI(uint256 agentId, string calldata newURI) external {
        _checkAuthorized(agentId);
        _setTokenURI(agentId, newURI);
        emit URIUpdated(agentId, newURI, msg.sender);
    }

    function getAgentWallet(uint256 agentId) external view returns (address) {
        _requireOwned(agentId);
        return address(bytes20(_metadata[agentId][_AGENT_WALLET_KEY]));
    }

    /// @notice Point the agent's payment wallet at `newWallet`, proven by `newWallet`'s signature over
    /// AgentWalletSet(agentId, newWallet, current owner, deadline). ECDSA is tried first (EOAs and EIP-7702
    /// accounts), then ERC-1271 (contract wallets).
    function setAgentWallet(uint256 agentId, address newWallet, uint256 deadline, bytes calldata signature) external {
        _checkAuthorized(agentId);
        require(newWallet != address(0), "bad wallet");
        require(block.timestamp <= deadline, "expired");
        require(deadline <= block.timestamp + _MAX_DEADLINE_DELAY, "deadline too far");

        bytes32 structHash =
            keccak256(abi.encode(_AGENT_WALLET_SET_TYPEHASH, agentId, newWallet, ownerOf(agentId), deadline));
        bytes32 digest = _hashTypedDataV4(structHash);
        require(_isValidWalletSignature(newWallet, digest, signature), "invalid wallet signature");

        bytes memory packed = abi.encodePacked(newWallet);
        _metadata[agentId][_AGENT_WALLET_KEY] = packed;
        emit MetadataSet(agentId, _AGENT_WALLET_KEY, _AGENT_WALLET_KEY, packed);
    }

    function unsetAgentWallet(uint256 agentId) external {
        _checkAuthorized(agentId);
        delete _metadata[agentId][_AGENT_WALLET_KEY];
        emit MetadataSet(agentId, _AGENT_WALLET_KEY, _AGENT_WALLET_KEY, "");
    }

    /// @notice Whether `spender` is the owner, an operator (approved for all) or the approved address of
    /// `agentId`. Reverts for an agent that does not exist. The reputation and validation registries use it
    /// to forbid self-feedback and to authorise validation requests.
    function isAuthorizedOrOwner(address spender, uint256 agentId) external view returns (bool) {
        address owner = ownerOf(agentId);
        return _isAuthorized(owner, spender, agentId);
    }

    function getVersion() external pure returns (string memory) {
        return "2.0.0";
    }

    function _mintAgent(address to, string memory agentURI, bool withURI) private returns (uint256 agentId) {
        agentId = _lastId++;
        bytes memory packed = abi.encodePacked(to);
        _metadata[agentId][_AGENT_WALLET_KEY] = packed;
        _safeMint(to, agentId);
        if (withURI) {
            _setTokenURI(agentId, agentURI);
        }
        emit Registered(agentId, agentURI, to);
        emit MetadataSet(agentId, _AGENT_WALLET_KEY, _AGENT_WALLET_KEY, packed);
    }

    function _setAgentMetadata(uint256 agentId, string memory metadataKey, bytes memory metadataValue) private {
        require(keccak256(bytes(metadataKey)) != _AGENT_WALLET_KEY_HASH, "reserved key");
        _metadata[agentId][metadataKey] = metadataValue;
        emit MetadataSet(agentId, metadataKey, metadataKey, metadataValue);
    }

    function _checkAuthorized(uint256 agentId) private view {
        require(_isAuthorized(ownerOf(agentId), msg.sender, agentId), "not authorized");
    }

    function _isValidWalletSignature(address wallet, bytes32 digest, bytes calldata signature)
        private
        view
        returns (bool)
    {
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, signature);
        if (err == ECDSA.RecoverError.NoError && recovered == wallet) {
            return true;
        }
        return SignatureChecker.isValidERC1271SignatureNow(wallet, digest, signature);
    }

    /// @dev A new owner must prove a wallet of their own: on every transfer (not on mint) the agentWallet is
    /// cleared, and its MetadataSet is emitted before the Transfer that super._update emits.
    function _update(address to, uint256 tokenId, address auth) internal override returns (address) {
        address from = _ownerOf(tokenId);
        if (from != address(0) && to != address(0)) {
            delete _metadata[tokenId][_AGENT_WALLET_KEY];
            emit MetadataSet(tokenId, _AGENT_WALLET_KEY, _AGENT_WALLET_KEY, "");
        }
        return super._update(to, tokenId, auth);
    }
}
