# A site host of the compose demo: witnessd beside PostgreSQL 15, run by
# witness-demo-site under an init (init: true). Also the app client's image.
FROM witness-demo/debian:bookworm
# Debian's postinst would make a cluster of its own; the entrypoint makes one.
RUN mkdir -p /etc/postgresql-common/createcluster.d \
 && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/no-main.conf \
 && apt-get update -qq \
 && apt-get install -y -qq postgresql-15 postgresql-client-15 bind9-dnsutils >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
ENV PATH=/usr/lib/postgresql/15/bin:$PATH
COPY site.sh /usr/local/bin/witness-demo-site
COPY app.sh /usr/local/bin/witness-demo-app
COPY pki.sh /usr/local/bin/witness-demo-pki
COPY stage/witnessd stage/witnessctl /usr/local/bin/
STOPSIGNAL SIGTERM
