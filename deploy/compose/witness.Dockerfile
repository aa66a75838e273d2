# A lone witness (the tiebreak site): the static binaries and nothing else.
FROM scratch
COPY stage/witnessd stage/witnessctl /
ENTRYPOINT ["/witnessd", "agent", "-config", "/etc/witness/witness.yaml"]
