resource "aws_vpc" "main" {
  cidr_block = var.vpc_cidr
}

resource "aws_subnet" "public_a" {
  vpc_id     = aws_vpc.main.id
  cidr_block = "10.20.1.0/24"
}

resource "aws_subnet" "private_a" {
  vpc_id     = aws_vpc.main.id
  cidr_block = "10.20.11.0/24"
}

resource "aws_network_acl" "public" {
  vpc_id     = aws_vpc.main.id
  subnet_ids = [aws_subnet.public_a.id]

  ingress {
    rule_no    = 100
    action     = "allow"
    protocol   = "tcp"
    cidr_block = "0.0.0.0/0"
    from_port  = 443
    to_port    = 443
  }

  ingress {
    rule_no         = 101
    action          = "allow"
    protocol        = "tcp"
    ipv6_cidr_block = "::/0"
    from_port       = 443
    to_port         = 443
  }

  ingress {
    rule_no    = 110
    action     = "allow"
    protocol   = "icmp"
    cidr_block = var.vpc_cidr
    from_port  = 0
    to_port    = 0
    icmp_type  = 3
    icmp_code  = 4
  }

  egress {
    rule_no    = 100
    action     = "allow"
    protocol   = "tcp"
    cidr_block = "0.0.0.0/0"
    from_port  = 1024
    to_port    = 65535
  }

  tags = {
    Name = "${var.env}-public"
  }
}

resource "aws_network_acl" "private" {
  vpc_id = aws_vpc.main.id

  tags = {
    Name = "${var.env}-private"
  }
}

resource "aws_network_acl_association" "private_a" {
  network_acl_id = aws_network_acl.private.id
  subnet_id      = aws_subnet.private_a.id
}

resource "aws_network_acl_rule" "private_in_db" {
  network_acl_id = aws_network_acl.private.id
  rule_number    = 100
  egress         = false
  protocol       = "tcp"
  rule_action    = "allow"
  cidr_block     = "10.20.1.0/24"
  from_port      = var.db_port
  to_port        = var.db_port
}

resource "aws_network_acl_rule" "private_in_deny_bad" {
  network_acl_id = aws_network_acl.private.id
  rule_number    = 90
  egress         = false
  protocol       = -1
  rule_action    = "deny"
  cidr_block     = "10.20.99.0/24"
}

resource "aws_network_acl_rule" "private_out_replies" {
  network_acl_id = aws_network_acl.private.id
  rule_number    = 100
  egress         = true
  protocol       = "tcp"
  rule_action    = "allow"
  cidr_block     = var.vpc_cidr
  from_port      = 1024
  to_port        = 65535
}

resource "aws_network_acl_rule" "private_out_ping" {
  network_acl_id = aws_network_acl.private.id
  rule_number    = 110
  egress         = true
  protocol       = "icmp"
  rule_action    = "allow"
  cidr_block     = var.vpc_cidr
  icmp_type      = -1
  icmp_code      = -1
}

resource "aws_network_acl_rule" "private_out_v6" {
  network_acl_id  = aws_network_acl.private.id
  rule_number     = 120
  egress          = true
  protocol        = "udp"
  rule_action     = "allow"
  ipv6_cidr_block = "2001:db8:1234::/56"
  from_port       = 53
  to_port         = 53
}
