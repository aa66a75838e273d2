# Prometheus scraping every witness of the demo, with Witness's alert rules
# (deploy/prometheus/*.yml, staged by up.sh) when there are any.
FROM witness-demo/debian:bookworm
RUN apt-get update -qq \
 && apt-get install -y -qq prometheus >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
COPY prometheus/prometheus.yml /etc/prometheus/prometheus.yml
COPY stage/rules/ /etc/prometheus/witness-rules/
USER prometheus
CMD ["prometheus", "--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/var/lib/prometheus/metrics2", "--web.listen-address=0.0.0.0:9090"]
