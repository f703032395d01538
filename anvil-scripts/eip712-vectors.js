#!/usr/bin/env node
// Independent EIP-712 vectors for vbank's sheets, made with ethers v6 (not alloy):
//   node anvil-scripts/eip712-vectors.js > crates/vbank-core/src/testdata/eip712-vectors.json
// crates/vbank-core checks that its digests and signatures equal these.
'use strict';
const path = require('path');
const { ethers } = require(path.join(__dirname, '..', 'node_modules', 'ethers'));

const types = {
  BalanceSheet: [
    { name: 'nonce', type: 'uint256' },
    { name: 'balance0', type: 'uint256' },
    { name: 'balance1', type: 'uint256' },
    { name: 'waiver', type: 'address' },
  ],
  Waiver: [{ name: 'nonce', type: 'uint256' }],
  Close: [
    { name: 'nonce', type: 'uint256' },
    { name: 'balance0', type: 'uint256' },
    { name: 'balance1', type: 'uint256' },
  ],
};

const key = '0x' + '00'.repeat(31) + '07';
const wallet = new ethers.Wallet(key);
const domains = [
  { chainId: 31337, verifyingContract: '0x5FbDB2315678afecb367f032d93F642f64180aa3' },
  { chainId: 1, verifyingContract: '0x000000000000000000000000000000000000cafe' },
];
const values = {
  BalanceSheet: [
    { nonce: 0, balance0: '5000000000000000000', balance1: '5000000000000000000', waiver: '0x00000000000000000000000000000000000000aa' },
    { nonce: '281474976710655', balance0: '340282366920938463463374607431768211455', balance1: 0, waiver: '0xffffffffffffffffffffffffffffffffffffffff' },
  ],
  Waiver: [{ nonce: 0 }, { nonce: 123456789 }],
  Close: [{ nonce: 7, balance0: 1, balance1: '2999999999999999999' }],
};

const out = { generator: 'ethers ' + ethers.version, signer: wallet.address, key, vectors: [] };
for (const d of domains) {
  const domain = { name: 'VirtualBank', version: '1', chainId: d.chainId, verifyingContract: d.verifyingContract };
  for (const [type, list] of Object.entries(values)) {
    for (const value of list) {
      const one = { [type]: types[type] };
      const digest = ethers.TypedDataEncoder.hash(domain, one, value);
      const sig = ethers.Signature.from(wallet.signingKey.sign(digest)).serialized;
      out.vectors.push({
        type, chainId: d.chainId, verifyingContract: d.verifyingContract,
        value: Object.fromEntries(Object.entries(value).map(([k, v]) => [k, String(v)])),
        domainSeparator: ethers.TypedDataEncoder.hashDomain(domain), digest, signature: sig,
      });
    }
  }
}
process.stdout.write(JSON.stringify(out, null, 2) + '\n');
