#!/usr/bin/env python3
"""A portal's side of docs/verify-python.md: asks a node for a decision, then for the
decision's inclusion proof, and keeps the bytes as files for verify_decision.py.

    get_evidence.py HOST:PORT JURISDICTION OUT_DIR

Writes OUT_DIR/request.pb (the DeploymentRequest bytes sent), OUT_DIR/decision.pb (the
SignedDecision) and OUT_DIR/proof.pb (the InclusionProof with its checkpoint). Needs
grpcio and the generated module.
"""

import os
import sys

import grpc
from silkgate.v1 import silkgate_pb2 as pb


def call(channel, method, request, response_type):
    stub = channel.unary_unary(
        method,
        # Deterministic: map fields (labels) in key order, the same bytes every time.
        request_serializer=lambda m: m.SerializeToString(deterministic=True),
        response_deserializer=response_type.FromString,
    )
    return stub(request, timeout=10)


def main() -> int:
    address, jurisdiction, out = sys.argv[1:4]
    deployment = pb.DeploymentRequest(
        request_id="portal-example-1",
        deployment_kind=pb.DEPLOYMENT_KIND_PERMISSIONED_APP,
        protocol=pb.Protocol(name="hyperledger-fabric"),
        permission_model=pb.PERMISSION_MODEL_PERMISSIONED,
    )
    with grpc.insecure_channel(address) as channel:
        request = pb.EvaluateRequest(jurisdiction=jurisdiction, request=deployment)
        answer = call(channel, "/silkgate.v1.Compliance/Evaluate", request, pb.EvaluateResponse)
        # The proof against the latest checkpoint (tree_size 0), which covers every
        # decision already answered.
        target = pb.GetInclusionProofRequest(decision_id=answer.decision_id, tree_size=0)
        proof = call(channel, "/silkgate.v1.DecisionLog/GetInclusionProof", target, pb.InclusionProof)
    files = {
        # Decision.request_sha256 is over these bytes as the node received them.
        "request.pb": deployment.SerializeToString(deterministic=True),
        # The leaf is the SignedDecision's bytes as sent. The node writes fields in
        # order and no unknown ones, so re-encoding the parsed message gives them back.
        "decision.pb": answer.decision.SerializeToString(),
        "proof.pb": proof.SerializeToString(),
    }
    for name, data in files.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"decision {answer.decision_id}: entry {proof.index} of {proof.tree_size}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
