# Security groups of the three-tier application.

resource "aws_security_group" "alb" {
  name        = "${var.env}-alb"
  description = "Public load balancer"
  vpc_id      = aws_vpc.main.id

  ingress {
    description      = "HTTPS"
    from_port        = 443
    to_port          = 443
    protocol         = "tcp"
    cidr_blocks      = ["0.0.0.0/0"]
    ipv6_cidr_blocks = ["::/0"]
  }

  ingress {
    description = "HTTP, redirected to HTTPS"
    from_port   = 80
    to_port     = 80
    protocol    = "6"
    cidr_blocks = ["0.0.0.0/0"]
  }

  egress {
    description     = "to the app servers"
    from_port       = 8080
    to_port         = 8080
    protocol        = "tcp"
    security_groups = [aws_security_group.app.id]
  }

  tags = {
    Name = "${var.env}-alb"
    team = "platform"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "app" {
  name_prefix = "app-"
  description = "Application servers"
  vpc_id      = aws_vpc.main.id
}

resource "aws_security_group_rule" "app_from_alb" {
  type                     = "ingress"
  security_group_id        = aws_security_group.app.id
  source_security_group_id = aws_security_group.alb.id
  from_port                = 8080
  to_port                  = 8080
  protocol                 = "tcp"
  description              = "from the load balancer"
}

resource "aws_security_group_rule" "app_ping" {
  type              = "ingress"
  security_group_id = aws_security_group.app.id
  protocol          = "icmp"
  from_port         = 8
  to_port           = -1
  cidr_blocks       = [aws_vpc.main.cidr_block]
}

resource "aws_security_group_rule" "app_cluster" {
  type              = "ingress"
  security_group_id = aws_security_group.app.id
  description       = "app servers talk to each other"
  protocol          = "-1"
  from_port         = 0
  to_port           = 0
  self              = true
}

resource "aws_vpc_security_group_egress_rule" "app_s3" {
  security_group_id = aws_security_group.app.id
  description       = "S3 through the gateway endpoint"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = var.s3_prefix_list
}

resource "aws_vpc_security_group_egress_rule" "app_https_v6" {
  security_group_id = aws_security_group.app.id
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv6         = "::/0"
}

resource "aws_vpc_security_group_egress_rule" "app_to_db" {
  security_group_id            = aws_security_group.app.id
  ip_protocol                  = "tcp"
  from_port                    = var.db_port
  to_port                      = var.db_port
  referenced_security_group_id = aws_security_group.db.id
}

resource "aws_security_group" "db" {
  name        = "db-postgres"
  description = "PostgreSQL"
  vpc_id      = aws_vpc.main.id

  ingress {
    from_port       = var.db_port
    to_port         = var.db_port
    protocol        = "tcp"
    security_groups = [aws_security_group.app.id, "sg-0aaa1bbb2ccc3ddd4"]
  }
}

resource "aws_security_group" "bastion" {
  name        = "bastion"
  description = "SSH bastion"
  vpc_id      = aws_vpc.main.id

  ingress {
    description = "SSH from the offices"
    from_port   = 22
    to_port     = 22
    protocol    = "tcp"
    cidr_blocks = var.office_cidrs
  }

  egress {
    from_port   = 0
    to_port     = 0
    protocol    = "all"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_security_group" "vpn" {
  name   = "vpn-endpoint"
  vpc_id = aws_vpc.main.id
}

resource "aws_vpc_security_group_ingress_rule" "vpn_esp" {
  security_group_id = aws_security_group.vpn.id
  ip_protocol       = "50"
  cidr_ipv4         = "198.51.100.0/24"
}
