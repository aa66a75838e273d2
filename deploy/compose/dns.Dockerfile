# BIND 9 with the demo's dynamic zone; the TSIG key is made at the first
# start into a volume (dns.sh), never into an image layer.
FROM witness-demo/debian:bookworm
RUN apt-get update -qq \
 && apt-get install -y -qq bind9 bind9-dnsutils >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
COPY dns.sh /usr/local/bin/witness-demo-dns
CMD ["witness-demo-dns"]
