# a2al-mcp serving MCP over streamable HTTP (serve --http), for clients on other machines.
#   docker build -t a2al-mcp .
#   docker run -p 8080:8080 -p 4121:4121/udp -v a2al:/data \
#     -e A2AL_MCP_TOKEN=<secret> -e A2AL_MCP_ADVERTISE=<this host's address> a2al-mcp
# Clients send "Authorization: Bearer <secret>". The node's state (key, inbox, peers) is in
# /data. Add -e A2AL_MCP_BOOTSTRAP=HOST:PORT to join through a peer, or
# -e A2AL_MCP_NETWORK=public to also ask the public A2AL seeds.
FROM python:3.12-slim
RUN useradd --create-home --uid 10001 a2al \
 && mkdir /data && chown a2al /data
COPY . /src
RUN pip install --no-cache-dir /src && rm -rf /src
USER a2al
ENV A2AL_MCP_HOME=/data \
    A2AL_MCP_LISTEN=0.0.0.0:4121
VOLUME /data
EXPOSE 8080/tcp 4121/udp
ENTRYPOINT ["a2al-mcp"]
CMD ["serve", "--http", "0.0.0.0:8080"]
