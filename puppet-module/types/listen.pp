# @summary An address to listen on: `IPv4:port` or `[IPv6]:port`.
type Masif_upgrader::Listen = Pattern[/\A(\d{1,3}(\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\]):\d{1,5}\z/]
