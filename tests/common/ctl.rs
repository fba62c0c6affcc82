//! A raw FTP control connection, for tests that must see every reply.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A TCP connection from the loopback address `source` to `port`.
pub fn connect_from(source: &str, port: u16) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let stream = runtime
        .block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(format!("{source}:0").parse().unwrap())?;
            socket
                .connect(format!("127.0.0.1:{port}").parse().unwrap())
                .await
        })
        .unwrap()
        .into_std()
        .unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

/// A raw control connection.
pub struct Ctl {
    pub reader: BufReader<TcpStream>,
    pub writer: TcpStream,
}

impl Ctl {
    pub fn open(port: u16) -> Ctl {
        Ctl::open_from("127.0.0.1", port)
    }

    /// Connects from `source` and reads the greeting.
    pub fn open_from(source: &str, port: u16) -> Ctl {
        let mut ctl = Ctl::raw_from(source, port);
        let greeting = ctl.reply();
        assert!(greeting.starts_with("220"), "{greeting}");
        ctl
    }

    /// Connects to `addr` and reads the greeting.
    pub fn open_addr(addr: SocketAddr) -> Ctl {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut ctl = Ctl {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        let greeting = ctl.reply();
        assert!(greeting.starts_with("220"), "{greeting}");
        ctl
    }

    pub fn raw_from(source: &str, port: u16) -> Ctl {
        let stream = connect_from(source, port);
        Ctl {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    /// One whole reply (the lines of a multi-line one joined); empty at EOF.
    pub fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return all,
                Ok(_) => {}
            }
            all.push_str(&line);
            let code = all.get(..3).unwrap_or("").to_owned();
            if line.len() >= 4 && line.starts_with(&code) && line.as_bytes()[3] == b' ' {
                return all;
            }
        }
    }

    pub fn send(&mut self, line: &str) {
        let _ = self.writer.write_all(format!("{line}\r\n").as_bytes());
    }

    pub fn cmd(&mut self, line: &str) -> String {
        self.send(line);
        self.reply()
    }

    pub fn login(&mut self, user: &str, password: &str) -> String {
        let r = self.cmd(&format!("USER {user}"));
        assert!(r.starts_with("331"), "{r}");
        self.cmd(&format!("PASS {password}"))
    }

    /// Waits for the server to close the connection; how long it took.
    pub fn closed_within(&mut self, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        self.writer.set_read_timeout(Some(limit)).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => return Some(start.elapsed()),
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    return Some(start.elapsed());
                }
                Err(_) => return None,
            }
        }
    }

    /// PASV: the data address.
    pub fn pasv(&mut self) -> SocketAddr {
        let r = self.cmd("PASV");
        assert!(r.starts_with("227"), "{r}");
        let inner = &r[r.find('(').unwrap() + 1..r.find(')').unwrap()];
        let n: Vec<u16> = inner.split(',').map(|x| x.parse().unwrap()).collect();
        format!("{}.{}.{}.{}:{}", n[0], n[1], n[2], n[3], n[4] * 256 + n[5])
            .parse()
            .unwrap()
    }
}
